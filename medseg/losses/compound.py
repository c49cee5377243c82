"""Weighted sums of losses with per-epoch weight ramps, and the deep-supervision wrapper."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medseg.losses.maps import MAP_NAMES

__all__ = ["CompoundLoss", "DeepSupervisionLoss", "LossTerm", "deep_supervision_weights"]


@dataclass(frozen=True)
class LossTerm:
    """One term of a :class:`CompoundLoss`: ``weight(epoch) = clip(weight + per_epoch * epoch, min, max)``.

    Kervadec et al.'s schedule for the boundary loss is ``weight=0.01, per_epoch=0.01, max=1.0``.
    """

    name: str
    loss: nn.Module
    weight: float = 1.0
    per_epoch: float = 0.0
    min: float = 0.0
    max: float | None = None

    def weight_at(self, epoch: int) -> float:
        """The term's weight at ``epoch`` (0-based)."""
        value = max(self.weight + self.per_epoch * epoch, self.min) if self.per_epoch else self.weight
        return value if self.max is None else min(value, self.max)


def _check_maps(maps: Mapping[str, torch.Tensor]) -> None:
    unknown = sorted(set(maps) - set(MAP_NAMES))
    if unknown:
        raise ValueError(f"unknown map keyword(s) {unknown}; valid: {', '.join(MAP_NAMES)}")


class CompoundLoss(nn.Module):
    """``sum_i w_i(epoch) L_i(logits, target, maps_i)``, e.g. Dice + CE (nnU-Net) or Dice + ramped boundary.

    ``forward(logits, target, **maps)`` hands each term only the maps it accepts. ``set_epoch(epoch)`` updates
    the ramped weights (and the terms' own schedules). After each call ``last_terms`` holds every term's
    unweighted, detached value for logging.

    Attributes:
        required_maps: Union of the terms' ``required_maps``.
        map_options: Union of the terms' ``map_options``.
    """

    def __init__(self, terms: Sequence[LossTerm]):
        super().__init__()
        if not terms:
            raise ValueError("terms must name at least one loss")
        names = [t.name for t in terms]
        labels = [n if names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(names)]
        for term in terms:
            if getattr(term.loss, "reduction", "mean") == "none":
                raise ValueError(f"compound term {term.name!r} has reduction='none'; use 'mean' or 'sum'")
        self.terms = list(terms)
        self.labels = labels
        self.losses = nn.ModuleList([t.loss for t in terms])
        self.required_maps = frozenset().union(*(getattr(t.loss, "required_maps", frozenset()) for t in terms))
        self.accepted_maps = frozenset().union(*(getattr(t.loss, "accepted_maps", frozenset()) for t in terms))
        self.map_options = {k: v for t in terms for k, v in getattr(t.loss, "map_options", {}).items()}
        self.epoch = 0
        self.last_terms: dict[str, torch.Tensor] = {}

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that the weight ramps read."""
        self.epoch = int(epoch)
        for term in self.terms:
            if hasattr(term.loss, "set_epoch"):
                term.loss.set_epoch(epoch)

    def weights(self) -> dict[str, float]:
        """Current weight of each term."""
        return {label: t.weight_at(self.epoch) for label, t in zip(self.labels, self.terms)}

    def forward(self, logits: torch.Tensor, target: torch.Tensor, **maps: torch.Tensor) -> torch.Tensor:
        """Weighted sum from logits ``(B, C, ...)``, target ``(B, 1, ...)`` and the terms' maps."""
        _check_maps(maps)
        total = None
        self.last_terms = {}
        for label, term in zip(self.labels, self.terms):
            accepted = getattr(term.loss, "accepted_maps", frozenset())
            value = term.loss(logits, target, **{k: v for k, v in maps.items() if k in accepted})
            self.last_terms[label] = value.detach()
            weighted = term.weight_at(self.epoch) * value
            total = weighted if total is None else total + weighted
        return total


def deep_supervision_weights(num_outputs: int) -> list[float]:
    """Weights ``1 / 2^i`` for outputs ``i = 0`` (full resolution) .. ``num_outputs - 1``, normalised to sum 1."""
    if num_outputs < 1:
        raise ValueError(f"num_outputs={num_outputs} must be >= 1")
    raw = [0.5**i for i in range(num_outputs)]
    return [w / sum(raw) for w in raw]


class DeepSupervisionLoss(nn.Module):
    """Apply a loss to every output of a deep-supervised network and sum with weights ``1/2^i``, normalised.

    ``forward(outputs, target, **maps)``: ``outputs`` is a list/tuple of logits ``(B, C, *spatial_i)`` at
    decreasing resolution (full resolution first) or one tensor. The target ``(B, 1, ...)`` and the maps are
    resampled to each output's size by nearest-neighbour (distances stay in mm, which is what the losses want).

    Args:
        loss: The loss for each scale.
        num_outputs: Number of outputs expected.
        weights: Optional explicit weights (normalised here); default ``deep_supervision_weights(num_outputs)``.
    """

    def __init__(self, loss: nn.Module, num_outputs: int, *, weights: Sequence[float] | None = None):
        super().__init__()
        self.loss = loss
        w = deep_supervision_weights(num_outputs) if weights is None else [float(x) for x in weights]
        if len(w) != num_outputs or min(w) < 0 or sum(w) <= 0:
            raise ValueError(f"weights={weights} must hold {num_outputs} non-negative numbers with a positive sum")
        self.weights = [x / sum(w) for x in w]
        self.required_maps = frozenset(getattr(loss, "required_maps", frozenset()))
        self.accepted_maps = frozenset(getattr(loss, "accepted_maps", frozenset()))
        self.map_options = dict(getattr(loss, "map_options", {}))

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to the wrapped loss."""
        if hasattr(self.loss, "set_epoch"):
            self.loss.set_epoch(epoch)

    def forward(
        self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor, **maps: torch.Tensor
    ) -> torch.Tensor:
        """Weighted sum of the loss over ``outputs``; see the class docstring for shapes."""
        _check_maps(maps)
        if isinstance(outputs, torch.Tensor):
            outputs = [outputs]
        if len(outputs) != len(self.weights):
            raise ValueError(f"deep supervision expected {len(self.weights)} outputs, got {len(outputs)}")
        total = None
        for weight, logits in zip(self.weights, outputs):
            size = tuple(logits.shape[2:])
            t = target if tuple(target.shape[2:]) == size else _nearest(target, size)
            m = {k: v if tuple(v.shape[2:]) == size else _nearest(v, size) for k, v in maps.items()}
            value = weight * self.loss(logits, t, **m)
            total = value if total is None else total + value
        return total


def _nearest(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    return F.interpolate(x.float(), size=size, mode="nearest").to(x.dtype)
