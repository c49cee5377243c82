"""Blocks the ResNet-based networks share (DeepLab v3+, PSPNet, RefineNet, GCN): a residual encoder whose
deepest levels may be atrous, conv - norm - act, and interpolation to a size.

The encoder is the residual encoder of ``resunet`` (MONAI ``UnetResBlock``, strided first convolution,
He et al., CVPR 2016) instead of the papers' ImageNet ResNets; MONAI's blocks take no dilation, so atrous
levels (Chen et al. 2017, arXiv:1706.05587; PSPNet's dilated network, Zhao et al. 2017) use
:class:`DilatedResBlock`, the same block with dilated convolutions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks.dynunet_block import UnetResBlock
from monai.networks.layers.utils import get_act_layer, get_norm_layer
from torch import nn

from medseg.errors import ConfigError
from medseg.models.common import Backbone

__all__ = [
    "ACT",
    "CONV",
    "DilatedResBlock",
    "conv_norm_act",
    "encoder_strides",
    "per_axis",
    "residual_encoder",
    "upsample_to",
]

CONV = {2: nn.Conv2d, 3: nn.Conv3d}
ACT = ("leakyrelu", {"inplace": True, "negative_slope": 0.01})  # the U-Nets' activation


def conv_norm_act(dims: int, cin: int, cout: int, norm: tuple, *, kernel_size: int = 1, dilation=1) -> nn.Module:
    """Convolution (no bias, 'same' padding) - norm - leaky ReLU."""
    dilation = [dilation] * dims if isinstance(dilation, int) else list(dilation)
    conv = CONV[dims](cin, cout, kernel_size, padding=[d * (kernel_size // 2) for d in dilation],
                      dilation=dilation, bias=False)  # fmt: skip
    return nn.Sequential(conv, get_norm_layer(norm, dims, cout), get_act_layer(ACT))


class DilatedResBlock(nn.Module):
    """MONAI's ``UnetResBlock`` (conv - norm - act - conv - norm, plus a 1x1 conv - norm projection when the
    width changes, add, act) with stride 1 and per-axis ``dilation`` (Chen et al. 2017, "atrous")."""

    def __init__(self, dims: int, cin: int, cout: int, kernel_size: int, dilation: Sequence[int], norm: tuple):
        super().__init__()
        pad = [d * (kernel_size // 2) for d in dilation]
        self.conv1 = CONV[dims](cin, cout, kernel_size, padding=pad, dilation=list(dilation), bias=False)
        self.norm1 = get_norm_layer(norm, dims, cout)
        self.conv2 = CONV[dims](cout, cout, kernel_size, padding=pad, dilation=list(dilation), bias=False)
        self.norm2 = get_norm_layer(norm, dims, cout)
        self.act = get_act_layer(ACT)
        self.project = (
            nn.Sequential(CONV[dims](cin, cout, 1, bias=False), get_norm_layer(norm, dims, cout))
            if cin != cout else nn.Identity()
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))
        return self.act(out + self.project(x))


def residual_encoder(backbone: Backbone, in_channels: int, *, atrous_levels: int = 0) -> nn.ModuleList:
    """``depth`` residual blocks; level ``i`` downsamples by ``strides[i]`` (in its first convolution), except
    the deepest ``atrous_levels`` levels, which keep the resolution and dilate by the stride they replace
    (cumulatively, per axis). Run the blocks in order; block ``i`` gives the features of level ``i``."""
    b, dims = backbone, backbone.spatial_dims
    last_strided = b.depth - 1 - atrous_levels
    blocks, dilation = [], [1] * dims
    for i, (cin, cout) in enumerate(zip([in_channels, *b.filters[:-1]], b.filters)):
        if i <= last_strided:
            blocks.append(UnetResBlock(dims, cin, cout, b.kernel_size, b.strides[i], b.norm, dropout=b.dropout))
        else:
            dilation = [d * s for d, s in zip(dilation, b.strides[i])]
            blocks.append(DilatedResBlock(dims, cin, cout, b.kernel_size, dilation, b.norm))
    return nn.ModuleList(blocks)


def encoder_strides(backbone: Backbone, *, atrous_levels: int = 0) -> list[tuple[int, ...]]:
    """The stride of every level's features relative to the input, for :func:`residual_encoder`."""
    last_strided = backbone.depth - 1 - atrous_levels
    cumulative = backbone.cumulative
    return [cumulative[min(i, last_strided)] for i in range(backbone.depth)]


def upsample_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear (2D) or trilinear (3D) interpolation of ``x`` ``(B, C, *n)`` to ``size`` (align_corners=False)."""
    mode = "bilinear" if x.ndim == 4 else "trilinear"
    return F.interpolate(x, size=list(size), mode=mode, align_corners=False)


def per_axis(key: str, values: Sequence, dims: int, *, minimum: int = 1) -> list[tuple[int, ...]]:
    """``values`` (each an int or ``dims`` ints) as per-axis tuples.

    Raises:
        ConfigError: Empty, or an entry that is not an int or ``dims`` ints >= ``minimum``, naming ``key``.
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ConfigError(f"model.{key} must be a non-empty list, got {values!r}")
    out = []
    for v in values:
        v = [v] * dims if isinstance(v, int) and not isinstance(v, bool) else v
        if (not isinstance(v, Sequence) or len(v) != dims
                or not all(isinstance(a, int) and not isinstance(a, bool) and a >= minimum for a in v)):  # fmt: skip
            raise ConfigError(f"model.{key} entries must be an int or {dims} ints >= {minimum}, got {v!r}")
        out.append(tuple(v))
    return out
