"""Pyramid scene parsing network in 2D and 3D (registered as ``pspnet``).

Zhao, Shi, Qi, Wang and Jia, "Pyramid Scene Parsing Network", CVPR 2017 (arXiv:1612.01105):

* **dilated backbone**: the deepest ``atrous_levels`` levels keep their resolution and dilate their
  convolutions instead (paper: a dilated ResNet at output stride 8, i.e. the last two stages of a
  stride-32 network; here ``atrous_levels`` defaults to ``min(2, depth - 2)``: output stride 8 at the
  default ``depth`` 6);
* **pyramid pooling module** (section 3.2): the deepest features average-pooled into ``bins`` x ``bins``
  regions for every ``bins`` of ``pool_bins`` (paper: 1, 2, 3, 6), each reduced by a 1x1 convolution to
  ``1 / len(pool_bins)`` of the width, upsampled (bilinear/trilinear) back and concatenated with the
  features; a ``kernel_size`` conv - norm - act, dropout and a 1x1 convolution give the scores, upsampled
  to the input size. Each bin is an int or one int per axis, so thick-slice 3D patches pool fewer regions
  along the slice axis (e.g. ``[[1, 1, 1], [2, 2, 1], [3, 3, 2], [6, 6, 3]]``).

Our adaptation: the backbone is the residual encoder of :mod:`medseg.models.blocks` (``resunet``'s blocks);
the pooled branches have no normalisation (one value per channel at bin 1: instance norm would zero it,
batch norm fails at batch size 1); the bottleneck keeps the deepest level's width (the paper reduces 4096
to 512). MONAI has no PSPNet; segmentation_models_pytorch's is 2D only.

Deep supervision (``train()`` mode): the paper's auxiliary loss on the stage before the last (res4b22),
a 1x1 score head on encoder level ``depth - 2``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.utils import get_act_layer
from torch import nn

from medseg.errors import ConfigError
from medseg.models.blocks import (
    ACT,
    CONV,
    conv_norm_act,
    encoder_strides,
    per_axis,
    residual_encoder,
    upsample_to,
)
from medseg.models.common import Backbone, crop_outputs, pad_to_multiple, resolve_backbone
from medseg.models.registry import register_model
from medseg.models.settings import BackboneSettings

__all__ = ["PSPNet", "PyramidPooling", "pspnet"]

_POOL = {2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


class PyramidPooling(nn.Module):
    """Pyramid pooling module (Zhao et al. 2017, section 3.2).

    Input ``(B, cin, *n)``; output ``(B, cin + len(bins) * branch, *n)``: the input and, for every bin, its
    ``bins``-region average pooling, 1x1 conv (bias) - act to ``branch`` channels, interpolated back.
    """

    def __init__(self, dims: int, cin: int, branch: int, bins: Sequence[tuple[int, ...]]):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(_POOL[dims](tuple(b)), CONV[dims](cin, branch, 1), get_act_layer(ACT)) for b in bins
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, *(upsample_to(stage(x), x.shape[2:]) for stage in self.stages)], dim=1)


class PSPNet(nn.Module):
    """PSPNet (see the module docstring).

    Args:
        backbone: Resolved encoder layout (:func:`medseg.models.common.resolve_backbone`).
        in_channels: Input channels ``C_in`` (2.5D: stacked slices).
        out_channels: Classes ``C`` (background included).
        atrous_levels: Deepest levels run at stride 1 with dilation instead of downsampling.
        pool_bins: Pyramid bins, per-axis tuples.

    Input ``(B, C_in, H, W[, D])`` of any size (zero-padded to a multiple of the output stride inside);
    output ``(B, C, H, W[, D])`` logits, or the deep-supervision list of :mod:`medseg.models.common`.
    """

    def __init__(self, backbone: Backbone, *, in_channels: int, out_channels: int, atrous_levels: int,
                 pool_bins: Sequence[tuple[int, ...]]):  # fmt: skip
        super().__init__()
        b, dims, width = backbone, backbone.spatial_dims, backbone.filters[-1]
        self.encoder = residual_encoder(b, in_channels, atrous_levels=atrous_levels)
        branch = max(1, width // len(pool_bins))
        self.pyramid = PyramidPooling(dims, width, branch, pool_bins)
        self.bottleneck = nn.Sequential(
            conv_norm_act(dims, width + len(pool_bins) * branch, width, b.norm, kernel_size=b.kernel_size),
            nn.Dropout(b.dropout or 0.0),
        )
        self.classifier = CONV[dims](width, out_channels, 1)
        self.aux_head = CONV[dims](b.filters[-2], out_channels, 1) if b.heads else None
        strides = encoder_strides(b, atrous_levels=atrous_levels)
        self._total_stride = strides[-1]  # the output stride
        self._head_strides = [strides[-2]] if b.heads else []

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        size = x.shape[2:]
        h = pad_to_multiple(x, self._total_stride)
        padded_size = h.shape[2:]
        features = []
        for block in self.encoder:
            h = block(h)
            features.append(h)
        full = upsample_to(self.classifier(self.bottleneck(self.pyramid(h))), padded_size)
        if not (self.training and self._head_strides):
            return crop_outputs(full, [], size, [])[0]
        return crop_outputs(full, [self.aux_head(features[-2])], size, self._head_strides)


@register_model("pspnet", min_depth=2, depth=6)
def pspnet(
    settings: BackboneSettings, *, atrous_levels: int | None = None, pool_bins: Sequence = (1, 2, 3, 6)
) -> nn.Module:
    """PSPNet (Zhao et al. 2017): dilated residual encoder and pyramid pooling; see :class:`PSPNet`.
    ``atrous_levels=None``: ``min(2, depth - 2)`` (output stride 8 at the default depth 6, as in the paper)."""
    backbone = resolve_backbone(settings, "pspnet", max_heads=1)
    depth = settings.depth
    atrous = min(2, depth - 2) if atrous_levels is None else atrous_levels
    if not isinstance(atrous, int) or isinstance(atrous, bool) or not 0 <= atrous <= depth - 2:
        raise ConfigError(f"model.atrous_levels must be an integer in 0..{depth - 2} for depth {depth}, got {atrous!r}")
    bins = per_axis("pool_bins", pool_bins, settings.spatial_dims)
    return PSPNet(backbone, in_channels=settings.in_channels, out_channels=settings.out_channels,
                  atrous_levels=atrous, pool_bins=bins)  # fmt: skip
