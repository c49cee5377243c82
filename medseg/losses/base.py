"""The thin base class every medseg loss module shares: configuration, input checks, the maps contract."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from medseg.losses._functional import (
    ACTIVATIONS,
    REDUCTIONS,
    annotated_mask,
    check_choice,
    check_ignore_index,
    check_inputs,
    encode_target,
    to_compute_dtype,
)

__all__ = ["SegLoss"]


class SegLoss(nn.Module):
    """Base of the medseg losses: holds ``activation`` and ``reduction`` and the precomputed-maps contract.

    Attributes:
        required_maps: Names of per-sample maps (see :mod:`medseg.losses.maps`) the data loader should
            compute with :func:`~medseg.losses.compute_maps` and pass to ``forward`` as keyword arguments.
        accepted_maps: Names ``forward`` accepts (``required_maps`` plus optional ones).
        map_options: Per-map keyword arguments for :func:`~medseg.losses.compute_maps` (``options=``).
        ignore_index: The label value of voxels that are not annotated (partial annotations, as nnU-Net's
            ignore label: Gotkowski et al., arXiv:2403.12834), or ``None``. Every loss is then the loss of the
            annotated voxels alone; distance maps come from annotated voxels (:mod:`medseg.losses.maps`).
    """

    required_maps: frozenset[str] = frozenset()
    accepted_maps: frozenset[str] = frozenset()

    def __init__(self, *, activation: str = "softmax", reduction: str = "mean", ignore_index: int | None = None):
        super().__init__()
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self.ignore_index = check_ignore_index(ignore_index)
        self.map_options: Mapping[str, Mapping] = {}

    def set_epoch(self, epoch: int) -> None:
        """Update epoch-dependent schedules (none for a plain loss)."""

    def _check(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        """Check inputs; return the annotated voxels ``(B, 1, ...)`` (``None`` without ``ignore_index``)."""
        check_inputs(logits, target, activation=self.activation, ignore_index=self.ignore_index)
        return annotated_mask(target, self.ignore_index)

    def _prepare(
        self, logits: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Check inputs; return logits in the compute dtype, the one-hot target ``(B, C, ...)`` (all zero on
        ignored voxels) and the annotated voxels ``(B, 1, ...)`` (``None`` without ``ignore_index``)."""
        mask = self._check(logits, target)
        logits = to_compute_dtype(logits)
        if mask is None:
            return logits, encode_target(target, logits.shape[1], logits.dtype), None
        onehot = encode_target(torch.where(mask, target, torch.zeros_like(target)), logits.shape[1], logits.dtype)
        return logits, onehot * mask, mask

    def extra_repr(self) -> str:
        ignore = "" if self.ignore_index is None else f", ignore_index={self.ignore_index}"
        return f"activation={self.activation!r}, reduction={self.reduction!r}{ignore}"
