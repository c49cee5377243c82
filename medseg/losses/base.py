"""The thin base class every medseg loss module shares: configuration, input checks, the maps contract."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from medseg.losses._functional import (
    ACTIVATIONS,
    REDUCTIONS,
    check_choice,
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
    """

    required_maps: frozenset[str] = frozenset()
    accepted_maps: frozenset[str] = frozenset()

    def __init__(self, *, activation: str = "softmax", reduction: str = "mean"):
        super().__init__()
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self.map_options: Mapping[str, Mapping] = {}

    def set_epoch(self, epoch: int) -> None:
        """Update epoch-dependent schedules (none for a plain loss)."""

    def _prepare(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Check inputs; return logits in the compute dtype and the one-hot target ``(B, C, ...)``."""
        check_inputs(logits, target, activation=self.activation)
        logits = to_compute_dtype(logits)
        return logits, encode_target(target, logits.shape[1], logits.dtype)

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}, reduction={self.reduction!r}"
