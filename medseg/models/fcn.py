"""Fully convolutional networks FCN-32s, FCN-16s and FCN-8s in 2D and 3D (registered as ``fcn32s``,
``fcn16s``, ``fcn8s``).

Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015
(arXiv:1411.4038). A VGG-like encoder (conv blocks, then max pooling) predicts class scores at its deepest
level; FCN-16s and FCN-8s add score layers on the one or two levels above and fuse by *summation* after a
learned transposed-convolution upsampling (section 4.2). Every upsampling is a transposed convolution
initialised to bilinear (trilinear in 3D) interpolation and learned; the score layers of the skip levels
start at zero, so the network starts from the coarser prediction, as in the paper.

Our adaptation: the encoder is ``depth`` levels of the U-Nets' block (MONAI ``UnetBasicBlock``:
two conv - norm - leaky ReLU), each after a max pooling by that level's stride. The paper's VGG-16 has
stride 32 at its deepest level: ``depth=6`` with the default strides; with other strides the names keep
their meaning as the number of fused levels (32s: the deepest only, 16s: two, 8s: three), and the
upsampling factors follow the per-axis strides (anisotropic 3D data: e.g. ``[2, 2, 1]``). The paper's
fully connected fc6/fc7 layers are the deepest level's conv block. MONAI has no FCN of this kind (its
``FCN`` is a ResNet-50 with global convolution, 2D only), so this is ours.

Deep supervision (``train()`` mode): the coarse score maps before each upsampling (FCN-8s: at strides 8,
16, 32 of the default layout) are the auxiliary outputs, highest resolution first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.networks.blocks.dynunet_block import UnetBasicBlock
from torch import nn

from medseg.models.common import Backbone, crop_outputs, pad_to_multiple, resolve_backbone
from medseg.models.registry import register_model
from medseg.models.settings import BackboneSettings

__all__ = ["FCN", "bilinear_kernel", "bilinear_upsampling", "fcn8s", "fcn16s", "fcn32s"]

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_TRANSPOSED = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
#: Fused levels of each variant (the paper's stride of the finest fused score map, at depth 6).
FUSED_LEVELS = {"fcn32s": 1, "fcn16s": 2, "fcn8s": 3}


def bilinear_kernel(factors: Sequence[int]) -> np.ndarray:
    """Separable (bi/tri)linear upsampling kernel for integer ``factors`` per axis.

    Size ``2 f - f % 2`` along an axis of factor ``f``, weights ``1 - |i - c| / f`` about the centre ``c``
    (the FCN reference implementation's ``upsample_filt``). With stride ``f`` and padding ``f // 2`` a
    transposed convolution with this kernel equals linear interpolation with ``align_corners=False``
    away from the borders (where the transposed convolution sees zeros instead of the edge value).
    """
    kernel = np.ones((), dtype=np.float64)
    for f in factors:
        size = 2 * f - f % 2
        centre = (size - 1) / 2.0
        weights = 1.0 - np.abs(np.arange(size) - centre) / f
        kernel = np.multiply.outer(kernel, weights)
    return kernel.astype(np.float32)


def bilinear_upsampling(spatial_dims: int, channels: int, factors: Sequence[int]) -> nn.Module:
    """A learned ``channels -> channels`` transposed convolution (no bias) upsampling by ``factors``,
    initialised to per-channel bilinear interpolation (zero across channels), as in Long et al. 2015.

    Input ``(B, channels, *n)``; output ``(B, channels, *(n * factors))``.
    """
    factors = [int(f) for f in factors]
    layer = _TRANSPOSED[spatial_dims](
        channels, channels, kernel_size=[2 * f - f % 2 for f in factors], stride=factors,
        padding=[f // 2 for f in factors], bias=False,
    )  # fmt: skip
    with torch.no_grad():
        layer.weight.zero_()
        kernel = torch.from_numpy(bilinear_kernel(factors))
        for c in range(channels):
            layer.weight[c, c] = kernel
    return layer


class FCN(nn.Module):
    """FCN-32s/16s/8s (see the module docstring).

    Args:
        backbone: Resolved encoder layout (:func:`medseg.models.common.resolve_backbone`).
        in_channels: Input channels ``C_in`` (2.5D: stacked slices).
        out_channels: Classes ``C`` (background included).
        fused_levels: 1 (FCN-32s), 2 (FCN-16s) or 3 (FCN-8s); at most ``backbone.depth``.

    Input ``(B, C_in, H, W[, D])`` of any size (zero-padded to a multiple of the total stride inside);
    output ``(B, C, H, W[, D])`` logits, or the deep-supervision list of :mod:`medseg.models.common`.
    """

    def __init__(self, backbone: Backbone, *, in_channels: int, out_channels: int, fused_levels: int):
        super().__init__()
        b, dims = backbone, backbone.spatial_dims
        channels = [in_channels, *b.filters]
        self.pools = nn.ModuleList(
            _POOL[dims](kernel_size=s, stride=s) if max(s) > 1 else nn.Identity() for s in b.strides
        )
        self.blocks = nn.ModuleList(
            UnetBasicBlock(dims, channels[i], channels[i + 1], b.kernel_size, 1, b.norm, dropout=b.dropout)
            for i in range(b.depth)
        )
        self.levels = list(range(b.depth - 1, b.depth - 1 - fused_levels, -1))  # deepest first
        self.scores = nn.ModuleList(_CONV[dims](b.filters[i], out_channels, kernel_size=1) for i in self.levels)
        for score in self.scores[1:]:  # skip scores start at zero (Long et al., section 4.2)
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)
        # 2x-like upsampling between fused levels (the level's own stride), then to full resolution
        self.fuse_ups = nn.ModuleList(bilinear_upsampling(dims, out_channels, b.strides[i]) for i in self.levels[:-1])
        self.final_up = bilinear_upsampling(dims, out_channels, b.cumulative[self.levels[-1]])
        self._total_stride = b.cumulative[-1]
        # auxiliary outputs: the score map of every fused level, highest resolution first
        self._head_strides = [b.cumulative[i] for i in reversed(self.levels)][: b.heads]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        size = x.shape[2:]
        features, h = {}, pad_to_multiple(x, self._total_stride)
        for level, (pool, block) in enumerate(zip(self.pools, self.blocks)):
            h = block(pool(h))
            features[level] = h
        score = self.scores[0](features[self.levels[0]])
        coarse = [score]
        for up, level, skip_score in zip(self.fuse_ups, self.levels[1:], self.scores[1:]):
            score = up(score) + skip_score(features[level])  # fusion by summation
            coarse.append(score)
        full = self.final_up(score)
        if not (self.training and self._head_strides):
            return crop_outputs(full, [], size, [])[0]
        return crop_outputs(full, coarse[::-1][: len(self._head_strides)], size, self._head_strides)


def _build(variant: str, settings: BackboneSettings) -> nn.Module:
    """Build :class:`FCN` of ``variant`` (as many deep-supervision heads as fused levels at most)."""
    fused = FUSED_LEVELS[variant]
    backbone = resolve_backbone(settings, variant, max_heads=fused)
    return FCN(backbone, in_channels=settings.in_channels, out_channels=settings.out_channels, fused_levels=fused)


@register_model("fcn32s", min_depth=1, depth=6)
def fcn32s(settings: BackboneSettings) -> nn.Module:
    """FCN-32s (Long et al. 2015): deepest scores, one learned upsampling; see :class:`FCN`."""
    return _build("fcn32s", settings)


@register_model("fcn16s", min_depth=2, depth=6)
def fcn16s(settings: BackboneSettings) -> nn.Module:
    """FCN-16s (Long et al. 2015): two levels fused by summation; see :class:`FCN`."""
    return _build("fcn16s", settings)


@register_model("fcn8s", min_depth=3, depth=6)
def fcn8s(settings: BackboneSettings) -> nn.Module:
    """FCN-8s (Long et al. 2015): three levels fused by summation; see :class:`FCN`."""
    return _build("fcn8s", settings)
