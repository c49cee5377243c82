"""What every non-U-Net network of the registry shares: the resolved encoder layout, padding to the total
stride, and the deep-supervision output contract.

The classic architectures (:mod:`~medseg.models.fcn`, :mod:`~medseg.models.segnet`,
:mod:`~medseg.models.deeplab`, :mod:`~medseg.models.pspnet`, :mod:`~medseg.models.refinenet`,
:mod:`~medseg.models.gcn`) take the U-Nets' :class:`~medseg.models.settings.BackboneSettings` with the same
meaning, so a pipeline (and its CPU profile) can switch ``model.name`` without other changes. They share
the U-Nets' output contract (:class:`~medseg.models.unet.SegmentationUNet`): input ``(B, C_in, H, W[, D])``
of any size, output ``(B, C, H, W[, D])`` logits; in ``train()`` mode with deep supervision a list
``[full, aux_1, ..., aux_n]`` whose ``aux_i`` has size ``ceil(size / head_strides[i - 1])``, highest
resolution first. ``_head_strides`` (read by the training loop to size its deep-supervision loss) lists
those strides, and is empty without deep supervision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medseg.models.settings import BackboneSettings

__all__ = ["Backbone", "crop_outputs", "cumulative_strides", "pad_to_multiple", "resolve_backbone"]


@dataclass(frozen=True)
class Backbone:
    """The resolved encoder layout shared by the classic networks.

    Attributes:
        spatial_dims: 2 or 3.
        strides: ``depth`` per-level strides, each ``spatial_dims`` ints (level 0: the input block).
        filters: Feature maps per level, ``min(base_filters * 2**i, max_filters)``.
        norm: MONAI ``norm_name`` tuple (:data:`medseg.models.settings.NORMS`).
        kernel_size: Convolution kernel size (odd).
        dropout: Dropout probability inside the conv blocks (``None`` for none).
        heads: Number of deep-supervision outputs (0 when deep supervision is off).
    """

    spatial_dims: int
    strides: tuple[tuple[int, ...], ...]
    filters: tuple[int, ...]
    norm: tuple
    kernel_size: int
    dropout: float | None
    heads: int

    @property
    def depth(self) -> int:
        return len(self.filters)

    @property
    def cumulative(self) -> list[tuple[int, ...]]:
        """Cumulative stride of every level's features relative to the input."""
        return cumulative_strides(self.strides)


def cumulative_strides(strides: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """Running product of per-level strides: the stride of each level's features relative to the input."""
    out, current = [], [1] * len(strides[0])
    for s in strides:
        current = [a * b for a, b in zip(current, s)]
        out.append(tuple(current))
    return out


def resolve_backbone(settings: BackboneSettings, model: str, *, max_heads: int) -> Backbone:
    """The :class:`Backbone` of ``settings`` for architecture ``model``.

    Args:
        settings: The validated shared keys (``depth`` already at least the architecture's smallest).
        model: The registered name, for messages.
        max_heads: Most deep-supervision outputs the architecture has for this ``depth``.

    Raises:
        ConfigError: ``deep_supervision_heads`` above ``max_heads``.
    """
    heads = settings.heads(model, max_heads=max_heads)
    return Backbone(
        settings.spatial_dims, settings.level_strides, settings.filters, settings.norm_name, settings.kernel_size,
        float(settings.dropout) or None, heads,
    )  # fmt: skip


def pad_to_multiple(x: torch.Tensor, multiple: Sequence[int]) -> torch.Tensor:
    """Zero-pad the high end of every spatial axis of ``x`` ``(B, C, *spatial)`` to a multiple of ``multiple``."""
    pad = [(-n) % m for n, m in zip(x.shape[2:], multiple)]
    if not any(pad):
        return x
    # F.pad lists the last axis first: (last_lo, last_hi, ..., first_lo, first_hi)
    return F.pad(x, [p for amount in reversed(pad) for p in (0, amount)])


def crop_outputs(
    full: torch.Tensor, aux: Sequence[torch.Tensor], size: Sequence[int], head_strides: Sequence[Sequence[int]]
) -> list[torch.Tensor]:
    """``[full cropped to size, aux_i cropped to ceil(size / head_strides[i])...]`` (the output contract)."""
    outputs = [full[(..., *(slice(0, n) for n in size))]]
    for out, stride in zip(aux, head_strides):
        outputs.append(out[(..., *(slice(0, math.ceil(n / s)) for n, s in zip(size, stride)))])
    return outputs
