"""Segmentation losses for 2D and 3D, any number of classes, spacing-aware where distances matter.

Every loss takes logits ``(B, C, H, W[, D])`` and an integer target ``(B, 1, H, W[, D])``, has one
``activation`` (``"softmax"``/``"sigmoid"``) and one ``reduction`` argument, computes half precision in
float32, and has ``required_maps`` naming the per-sample maps (``weight_map``, ``distance_map``,
``target_distance``) the data pipeline computes with :func:`compute_maps` and passes to ``forward`` as
keyword arguments. Build losses by name with :func:`get_loss` / :func:`build_loss`; see ``docs/losses.md``.
"""

from medseg.losses.base import SegLoss
from medseg.losses.compound import CompoundLoss, DeepSupervisionLoss, LossTerm, deep_supervision_weights
from medseg.losses.distance import BoundaryLoss, HausdorffDTLoss, distance_field
from medseg.losses.maps import (
    MAP_NAMES,
    border_weight_map,
    boundary_distance_map,
    compute_maps,
    signed_distance_map,
)
from medseg.losses.pixel import BorderCrossEntropyLoss, CrossEntropyLoss, FocalLoss
from medseg.losses.region import DiceLoss, FocalTverskyLoss, TverskyLoss
from medseg.losses.registry import LOSSES, build_loss, get_loss, loss_parameters

__all__ = [
    "LOSSES",
    "MAP_NAMES",
    "BorderCrossEntropyLoss",
    "BoundaryLoss",
    "CompoundLoss",
    "CrossEntropyLoss",
    "DeepSupervisionLoss",
    "DiceLoss",
    "FocalLoss",
    "FocalTverskyLoss",
    "HausdorffDTLoss",
    "LossTerm",
    "SegLoss",
    "TverskyLoss",
    "border_weight_map",
    "boundary_distance_map",
    "build_loss",
    "compute_maps",
    "deep_supervision_weights",
    "distance_field",
    "get_loss",
    "loss_parameters",
    "signed_distance_map",
]
