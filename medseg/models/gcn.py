"""Global convolution network with boundary refinement in 2D and 3D (registered as ``gcn``).

Peng, Zhang, Yu, Luo and Sun, "Large Kernel Matters -- Improve Semantic Segmentation by Global
Convolutional Network", CVPR 2017 (arXiv:1703.02719):

* **GCN module** (section 3.1): a large ``k x k`` kernel made of separable convolutions, the sum of a
  ``k x 1`` then ``1 x k`` branch and a ``1 x k`` then ``k x 1`` branch, no normalisation or activation,
  mapping every encoder level's features straight to ``C`` class score maps. In 3D there are three
  branches, the cyclic orders of the axes (``k x 1 x 1 -> 1 x k x 1 -> 1 x 1 x k`` and its two rotations),
  so each branch covers the whole ``k x k x k`` window as the two 2D branches cover ``k x k``. ``gcn_kernel``
  is an int or one int per axis (thick 3D slices: e.g. ``[7, 7, 3]``);
* **boundary refinement** (BR): a residual block ``x + conv(relu(conv(x)))`` on the score maps;
* **coarse to fine**: the deepest level's scores (GCN, BR) are upsampled by a learned transposed
  convolution, added to the next level's scores (GCN, BR), refined by another BR, and so on up to level 0.

Our adaptation: the encoder is the residual encoder of :mod:`medseg.models.blocks` (``resunet``'s blocks,
the paper uses ResNet-152) and every level has a GCN (the paper uses the four ResNet stages, strides 4 to
32); the transposed convolutions start as bilinear/trilinear interpolation
(:func:`medseg.models.fcn.bilinear_upsampling`) and are learned; with a strided level 0 (``strides[0] > 1``)
a last one of them brings level 0's scores to the input size. MONAI's ``FCN`` (a 2D ResNet-50 with GCN
blocks, torchvision weights) is 2D only and not used.

Deep supervision (``train()`` mode): the refined score maps of levels ``1 .. heads`` before their upsampling
(no extra parameters), highest resolution first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.models.blocks import CONV, per_axis, residual_encoder
from medseg.models.common import Backbone, crop_outputs, pad_to_multiple, resolve_backbone
from medseg.models.fcn import bilinear_upsampling
from medseg.models.registry import register_model
from medseg.models.settings import BackboneSettings

__all__ = ["GCN", "BoundaryRefinement", "GlobalConvolution", "gcn"]


def _along(dims: int, axis: int, value: int, other: int) -> tuple[int, ...]:
    return tuple(value if a == axis else other for a in range(dims))


class GlobalConvolution(nn.Module):
    """The GCN module (Peng et al. 2017, section 3.1, Figure 2 C), in ``dims`` dimensions.

    Input ``(B, cin, *n)``; output ``(B, cout, *n)``: the sum over the ``dims`` cyclic axis orders of a chain of
    one-axis convolutions (kernel ``kernel[a]`` along axis ``a``, 'same' padding, with bias), the first
    ``cin -> cout``, the others ``cout -> cout``.
    """

    def __init__(self, dims: int, cin: int, cout: int, kernel: Sequence[int]):
        super().__init__()
        branches = []
        for start in range(dims):
            axes = [(start + i) % dims for i in range(dims)]
            branches.append(nn.Sequential(*(
                CONV[dims](cin if i == 0 else cout, cout, _along(dims, a, kernel[a], 1),
                           padding=_along(dims, a, kernel[a] // 2, 0))
                for i, a in enumerate(axes)
            )))  # fmt: skip
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(branch(x) for branch in self.branches)


class BoundaryRefinement(nn.Module):
    """Boundary refinement (Peng et al. 2017, Figure 2 D): ``x + conv(relu(conv(x)))``, two ``kernel_size``
    convolutions (with bias) of ``channels -> channels``. Input and output ``(B, channels, *n)``."""

    def __init__(self, dims: int, channels: int, kernel_size: int):
        super().__init__()
        self.residual = nn.Sequential(
            CONV[dims](channels, channels, kernel_size, padding=kernel_size // 2),
            nn.ReLU(inplace=True),
            CONV[dims](channels, channels, kernel_size, padding=kernel_size // 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)


class GCN(nn.Module):
    """GCN with boundary refinement (see the module docstring).

    Args:
        backbone: Resolved encoder layout (:func:`medseg.models.common.resolve_backbone`).
        in_channels: Input channels ``C_in`` (2.5D: stacked slices).
        out_channels: Classes ``C`` (background included).
        kernel: GCN kernel size per axis (odd).

    Input ``(B, C_in, H, W[, D])`` of any size (zero-padded to a multiple of the total stride inside);
    output ``(B, C, H, W[, D])`` logits, or the deep-supervision list of :mod:`medseg.models.common`.
    """

    def __init__(self, backbone: Backbone, *, in_channels: int, out_channels: int, kernel: Sequence[int]):
        super().__init__()
        b, dims, c = backbone, backbone.spatial_dims, out_channels
        self.encoder = residual_encoder(b, in_channels)
        self.gcns = nn.ModuleList(GlobalConvolution(dims, f, c, kernel) for f in b.filters)
        self.level_refine = nn.ModuleList(BoundaryRefinement(dims, c, b.kernel_size) for _ in b.filters)
        # levels 0 .. depth-2: after adding the upsampled deeper scores; ups[i] brings level i+1 to level i
        self.fused_refine = nn.ModuleList(BoundaryRefinement(dims, c, b.kernel_size) for _ in b.filters[:-1])
        self.ups = nn.ModuleList(bilinear_upsampling(dims, c, s) for s in b.strides[1:])
        first = b.strides[0]
        self.final_up = bilinear_upsampling(dims, c, first) if max(first) > 1 else nn.Identity()
        self._total_stride = b.cumulative[-1]
        self._head_strides = b.cumulative[1 : b.heads + 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        size = x.shape[2:]
        h, features = pad_to_multiple(x, self._total_stride), []
        for block in self.encoder:
            h = block(h)
            features.append(h)
        scores = {}
        score = self.level_refine[-1](self.gcns[-1](features[-1]))
        scores[len(features) - 1] = score
        for level in range(len(features) - 2, -1, -1):
            lateral = self.level_refine[level](self.gcns[level](features[level]))
            score = self.fused_refine[level](self.ups[level](score) + lateral)
            scores[level] = score
        full = self.final_up(score)
        if not (self.training and self._head_strides):
            return crop_outputs(full, [], size, [])[0]
        aux = [scores[level] for level in range(1, len(self._head_strides) + 1)]
        return crop_outputs(full, aux, size, self._head_strides)


@register_model("gcn", min_depth=2, depth=5)
def gcn(settings: BackboneSettings, *, gcn_kernel: int | Sequence[int] = 7) -> nn.Module:
    """GCN (Peng et al. 2017): large separable kernels and boundary refinement on every level; see :class:`GCN`.
    ``gcn_kernel``: odd, an int or one per axis (the paper's best is 15 on a 16 x 16 feature map)."""
    backbone = resolve_backbone(settings, "gcn", max_heads=settings.depth - 1)
    kernel = per_axis("gcn_kernel", [gcn_kernel], settings.spatial_dims)[0]
    if any(k % 2 == 0 for k in kernel):
        raise ConfigError(f"model.gcn_kernel must be odd along every axis, got {gcn_kernel!r}")
    return GCN(backbone, in_channels=settings.in_channels, out_channels=settings.out_channels, kernel=kernel)
