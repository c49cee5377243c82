"""RefineNet: multi-path refinement in 2D and 3D (registered as ``refinenet``).

Lin, Milan, Shen and Reid, "RefineNet: Multi-Path Refinement Networks for High-Resolution Semantic
Segmentation", CVPR 2017 (arXiv:1611.06612). A residual encoder gives features at every resolution; a
RefineNet block per level, deepest first, fuses that level's features with the previous block's output
(section 3.2, Figure 3):

* **residual conv units** (RCU): ``x + conv(relu(conv(relu(x))))``, two ``kernel_size`` convolutions with
  bias and no normalisation (the paper's ResNet unit without batch norm), two on every input path;
* **multi-resolution fusion**: one ``kernel_size`` convolution per path to the level's width, the coarser
  path upsampled (bilinear/trilinear) to the finer one, summed (the deepest block has one path, no fusion);
* **chained residual pooling** (CRP): ``relu(x)``, then ``crp_stages`` times a max pooling (stride 1, window
  ``crp_pool``) followed by a ``kernel_size`` convolution (no bias), each stage fed by the previous and
  added to the sum; ``crp_pool`` is an int or one int per axis (the paper's 5; thick slices: e.g.
  ``[5, 5, 3]``);
* **output conv**: one RCU.

The finest block's output goes through two RCUs and a 1x1 convolution (the paper's final step before the
softmax). Our adaptation: the encoder is the residual encoder of :mod:`medseg.models.blocks` (``resunet``'s
blocks instead of ResNet-101), the block of level ``i`` works at that level's width ``filters[i]`` (the
paper: 512 for the deepest, 256 for the others), and every level has a block (the paper's four ResNet
stages); the 2D form is the paper's, the 3D form replaces every convolution and pooling by its 3D
counterpart. MONAI has no RefineNet.

Deep supervision (``train()`` mode): a 1x1 score head on the output of the blocks of levels ``1 .. heads``,
highest resolution first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.models.blocks import CONV, per_axis, residual_encoder, upsample_to
from medseg.models.common import Backbone, crop_outputs, pad_to_multiple, resolve_backbone
from medseg.models.registry import register_model
from medseg.models.settings import BackboneSettings

__all__ = ["ChainedResidualPooling", "RefineBlock", "RefineNet", "ResidualConvUnit", "refinenet"]

_MAXPOOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}


class ResidualConvUnit(nn.Module):
    """RCU (Lin et al. 2017, Figure 3 b): ``x + conv(relu(conv(relu(x))))``, ``channels -> channels``."""

    def __init__(self, dims: int, channels: int, kernel_size: int):
        super().__init__()
        pad = kernel_size // 2
        self.residual = nn.Sequential(
            nn.ReLU(), CONV[dims](channels, channels, kernel_size, padding=pad),
            nn.ReLU(), CONV[dims](channels, channels, kernel_size, padding=pad),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)


class ChainedResidualPooling(nn.Module):
    """CRP (Lin et al. 2017, Figure 3 d): ``y = relu(x)``, then per stage ``p = conv(maxpool(p))`` from
    ``p = y``, and ``y + sum(p_stages)``. Input and output ``(B, channels, *n)``."""

    def __init__(self, dims: int, channels: int, kernel_size: int, *, stages: int, pool: Sequence[int]):
        super().__init__()
        self.act = nn.ReLU()
        self.stages = nn.ModuleList(
            nn.Sequential(
                _MAXPOOL[dims](tuple(pool), stride=1, padding=tuple(p // 2 for p in pool)),
                CONV[dims](channels, channels, kernel_size, padding=kernel_size // 2, bias=False),
            )
            for _ in range(stages)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = path = self.act(x)
        for stage in self.stages:
            path = stage(path)
            out = out + path
        return out


class RefineBlock(nn.Module):
    """A RefineNet block (Lin et al. 2017, Figure 3 a) of width ``width``: two RCUs per input path (this
    level's features of ``width`` channels and, unless deepest, the coarser block's output of ``coarse``
    channels), fusion, CRP, output RCU. Output ``(B, width, *n)`` at this level's resolution."""

    def __init__(self, dims: int, width: int, coarse: int | None, kernel_size: int, *, crp_stages: int,
                 crp_pool: Sequence[int]):  # fmt: skip
        super().__init__()
        k = kernel_size
        self.fine_rcu = nn.Sequential(ResidualConvUnit(dims, width, k), ResidualConvUnit(dims, width, k))
        self.coarse_rcu = None
        if coarse is not None:
            self.coarse_rcu = nn.Sequential(ResidualConvUnit(dims, coarse, k), ResidualConvUnit(dims, coarse, k))
            self.fine_fuse = CONV[dims](width, width, k, padding=k // 2)
            self.coarse_fuse = CONV[dims](coarse, width, k, padding=k // 2)
        self.crp = ChainedResidualPooling(dims, width, k, stages=crp_stages, pool=crp_pool)
        self.output = ResidualConvUnit(dims, width, k)

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fine_rcu(fine)
        if self.coarse_rcu is not None:
            c = self.coarse_fuse(self.coarse_rcu(coarse))
            h = self.fine_fuse(h) + upsample_to(c, h.shape[2:])
        return self.output(self.crp(h))


class RefineNet(nn.Module):
    """RefineNet (see the module docstring).

    Args:
        backbone: Resolved encoder layout (:func:`medseg.models.common.resolve_backbone`).
        in_channels: Input channels ``C_in`` (2.5D: stacked slices).
        out_channels: Classes ``C`` (background included).
        crp_stages: Pooling stages of every chained residual pooling.
        crp_pool: Max-pooling window per axis (odd).

    Input ``(B, C_in, H, W[, D])`` of any size (zero-padded to a multiple of the total stride inside);
    output ``(B, C, H, W[, D])`` logits, or the deep-supervision list of :mod:`medseg.models.common`.
    """

    def __init__(self, backbone: Backbone, *, in_channels: int, out_channels: int, crp_stages: int,
                 crp_pool: Sequence[int]):  # fmt: skip
        super().__init__()
        b, dims, f, k = backbone, backbone.spatial_dims, backbone.filters, backbone.kernel_size
        self.encoder = residual_encoder(b, in_channels)
        self.refine = nn.ModuleList(
            RefineBlock(dims, f[i], f[i + 1] if i + 1 < b.depth else None, k, crp_stages=crp_stages,
                        crp_pool=crp_pool)
            for i in range(b.depth)
        )  # fmt: skip
        self.final = nn.Sequential(ResidualConvUnit(dims, f[0], k), ResidualConvUnit(dims, f[0], k))
        self.classifier = CONV[dims](f[0], out_channels, 1)
        self.heads = nn.ModuleList(CONV[dims](f[i], out_channels, 1) for i in range(1, b.heads + 1))
        self._total_stride = b.cumulative[-1]
        self._level0_stride = b.cumulative[0]
        self._head_strides = b.cumulative[1 : b.heads + 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        size = x.shape[2:]
        h = pad_to_multiple(x, self._total_stride)
        padded_size, features = h.shape[2:], []
        for block in self.encoder:
            h = block(h)
            features.append(h)
        refined: list[torch.Tensor | None] = [None] * len(features)
        for level in range(len(features) - 1, -1, -1):  # deepest first
            coarse = refined[level + 1] if level + 1 < len(features) else None
            refined[level] = self.refine[level](features[level], coarse)
        full = self.classifier(self.final(refined[0]))
        if max(self._level0_stride) > 1:
            full = upsample_to(full, padded_size)
        if not (self.training and self._head_strides):
            return crop_outputs(full, [], size, [])[0]
        aux = [head(refined[level]) for level, head in enumerate(self.heads, start=1)]
        return crop_outputs(full, aux, size, self._head_strides)


@register_model("refinenet", min_depth=2, depth=5)
def refinenet(settings: BackboneSettings, *, crp_stages: int = 2, crp_pool: int | Sequence[int] = 5) -> nn.Module:
    """RefineNet (Lin et al. 2017): a multi-path refinement block per level; see :class:`RefineNet`.
    ``crp_stages``: the paper's Figure 3 shows 2; ``crp_pool``: odd, an int or one per axis."""
    backbone = resolve_backbone(settings, "refinenet", max_heads=settings.depth - 1)
    if not isinstance(crp_stages, int) or isinstance(crp_stages, bool) or crp_stages < 1:
        raise ConfigError(f"model.crp_stages must be an integer >= 1, got {crp_stages!r}")
    pool = per_axis("crp_pool", [crp_pool], settings.spatial_dims)[0]
    if any(p % 2 == 0 for p in pool):
        raise ConfigError(f"model.crp_pool must be odd along every axis, got {crp_pool!r}")
    return RefineNet(backbone, in_channels=settings.in_channels, out_channels=settings.out_channels,
                     crp_stages=crp_stages, crp_pool=pool)  # fmt: skip
