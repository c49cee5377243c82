"""Per-voxel classification losses: cross-entropy, U-Net weighted border cross-entropy and focal loss.

Cross-entropy is :func:`torch.nn.functional.cross_entropy` (softmax) or
:func:`~torch.nn.functional.binary_cross_entropy_with_logits` (sigmoid). Focal is our own few lines (see
:func:`medseg.losses._functional.focal_per_voxel`): MONAI's ``FocalLoss`` averages over classes as well as
voxels and re-normalises the softmax over the kept channels when the background is dropped; tests show ours
equals C times MONAI's value.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medseg.losses._functional import (
    as_class_vector,
    encode_target,
    focal_per_voxel,
    reduce_loss,
    to_compute_dtype,
)
from medseg.losses.base import SegLoss
from medseg.losses.maps import border_weight_map

__all__ = ["BorderCrossEntropyLoss", "CrossEntropyLoss", "FocalLoss"]

log = logging.getLogger(__name__)


def _cross_entropy_per_voxel(
    logits: torch.Tensor, target: torch.Tensor, activation: str, weights: torch.Tensor | None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy per voxel ``(B, 1, ...)``; sigmoid sums the binary terms over channels. Voxels outside
    ``mask`` (the annotated ones) get 0."""
    if mask is not None:
        target = torch.where(mask, target, torch.zeros_like(target))
    if activation == "softmax":
        w = None if weights is None else weights.to(logits)
        ce = F.cross_entropy(logits, target[:, 0].long(), weight=w, reduction="none").unsqueeze(1)
        return ce if mask is None else ce * mask
    onehot = encode_target(target, logits.shape[1], logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
    if weights is not None:
        bce = bce * weights.to(bce).reshape(1, -1, *([1] * (bce.ndim - 2)))
    bce = bce.sum(1, keepdim=True)
    return bce if mask is None else bce * mask


class CrossEntropyLoss(SegLoss):
    """Cross-entropy from logits ``(B, C, ...)`` and integer target ``(B, 1, ...)``.

    Args:
        activation: ``"softmax"`` (multi-class CE) or ``"sigmoid"`` (binary CE per channel, summed).
        class_weights: One weight per channel; with softmax and ``"mean"`` the mean is weighted (divided by
            the summed weights of the voxels' classes), as :func:`torch.nn.functional.cross_entropy`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B, 1, H, W[, D])``).
        ignore_index: Label value of voxels that are not annotated; ``"mean"`` is then over the annotated
            voxels (:func:`torch.nn.functional.cross_entropy`'s ``ignore_index``), 0 when there is none.
    """

    def __init__(
        self,
        *,
        activation: str = "softmax",
        class_weights: Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int | None = None,
    ):
        super().__init__(activation=activation, reduction=reduction, ignore_index=ignore_index)
        self.register_buffer("class_weights", as_class_vector("class_weights", class_weights), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss from logits ``(B, C, ...)`` and integer target ``(B, 1, ...)``."""
        mask = self._check(logits, target)  # no one-hot: CE takes the labels
        logits = to_compute_dtype(logits)
        weights = self.class_weights
        if weights is not None and weights.numel() != logits.shape[1]:
            raise ValueError(f"class_weights has {weights.numel()} values for {logits.shape[1]} channels")
        if self.activation == "softmax" and self.reduction != "none" and (mask is None or bool(mask.any())):
            w = None if weights is None else weights.to(logits)
            ignore = -100 if self.ignore_index is None else self.ignore_index
            return F.cross_entropy(logits, target[:, 0].long(), weight=w, reduction=self.reduction, ignore_index=ignore)
        ce = _cross_entropy_per_voxel(logits, target, self.activation, weights, mask)
        return reduce_loss(ce, self.reduction, mask)


class BorderCrossEntropyLoss(SegLoss):
    """U-Net weighted cross-entropy, ``mean_x w(x) CE(x)`` (Ronneberger et al., MICCAI 2015, eq. 1-2).

    ``forward(logits, target, *, weight_map)`` takes the weight map ``(B, 1, H, W[, D])`` the data pipeline
    computed once per sample with :func:`~medseg.losses.border_weight_map` (``compute_maps(...,
    options=loss.map_options)``). Without it the map is computed here from the target, on the CPU (slow).

    Args:
        w0: Border weight (default 10).
        sigma: Border width in pixels (default 5); or give ``sigma_mm`` (then ``spacing_mm`` for the
            on-the-fly fallback) to measure it in mm.
        sigma_mm: Border width in mm, instead of ``sigma``.
        class_weights: Class balancing ``w_c`` of the map: ``"balanced"``, ``None`` or one weight per label.
        spacing_mm: Voxel size, only used by the on-the-fly fallback with ``sigma_mm``.
        activation: ``"softmax"`` or ``"sigmoid"`` (binary CE summed over channels).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B, 1, H, W[, D])``).
        ignore_index: Label value of voxels that are not annotated: the map is built from the annotated
            voxels (:func:`~medseg.losses.border_weight_map`) and ``"mean"`` is over them.
    """

    required_maps = frozenset({"weight_map"})
    accepted_maps = required_maps

    def __init__(
        self,
        *,
        w0: float = 10.0,
        sigma: float = 5.0,
        sigma_mm: float | None = None,
        class_weights: str | Sequence[float] | None = "balanced",
        spacing_mm: Sequence[float] | None = None,
        activation: str = "softmax",
        reduction: str = "mean",
        ignore_index: int | None = None,
    ):
        super().__init__(activation=activation, reduction=reduction, ignore_index=ignore_index)
        if not (w0 >= 0 and sigma > 0 and (sigma_mm is None or sigma_mm > 0)):
            raise ValueError(f"w0={w0} must be >= 0, sigma={sigma} and sigma_mm={sigma_mm} > 0")
        options: dict = {"w0": float(w0), "class_weights": class_weights}
        if sigma_mm is None:
            options["sigma"] = float(sigma)
        else:
            options["sigma_mm"] = float(sigma_mm)
        self.map_options = {"weight_map": options}
        self.spacing_mm = None if spacing_mm is None else tuple(float(s) for s in spacing_mm)

    def _fallback_map(self, target: torch.Tensor) -> torch.Tensor:
        opts = dict(self.map_options["weight_map"])
        if "sigma_mm" in opts:
            if self.spacing_mm is None:
                raise ValueError("border_ce got no weight_map and has sigma_mm but no spacing_mm to compute one")
            opts["sigma"] = opts.pop("sigma_mm")
            opts["spacing_mm"] = self.spacing_mm
        log.debug("border_ce: computing weight_map on the fly; precompute it in the data pipeline")
        labels = target[:, 0].detach().cpu().numpy().astype(np.int64)
        maps = np.stack([border_weight_map(lab, **opts, ignore_label=self.ignore_index) for lab in labels])[:, None]
        return torch.from_numpy(maps).to(target.device)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, *, weight_map: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Loss from logits ``(B, C, ...)``, target ``(B, 1, ...)`` and ``weight_map`` ``(B, 1, ...)``."""
        mask = self._check(logits, target)
        logits = to_compute_dtype(logits)
        if weight_map is None:
            weight_map = self._fallback_map(target)
        if weight_map.shape != target.shape:
            raise ValueError(
                f"weight_map must be (B, 1, *spatial) = {tuple(target.shape)}, got {tuple(weight_map.shape)}"
            )
        ce = _cross_entropy_per_voxel(logits, target, self.activation, None, mask)
        return reduce_loss(ce * weight_map.to(ce), self.reduction, mask)


class FocalLoss(SegLoss):
    """Focal loss ``-alpha_t (1 - p_t)^gamma log p_t`` per voxel, summed over classes (Lin et al., ICCV 2017).

    Args:
        gamma: Focusing parameter (default 2; 0 gives cross-entropy).
        alpha: Softmax: one weight per class (weights each voxel by its true class). Sigmoid: a scalar or one
            per channel, weighting positives by ``alpha`` and negatives by ``1 - alpha`` (Lin's alpha = 0.25).
        activation: ``"softmax"`` or ``"sigmoid"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B, 1, H, W[, D])``).
        ignore_index: Label value of voxels that are not annotated; ``"mean"`` is over the annotated ones.
    """

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = None,
        activation: str = "softmax",
        reduction: str = "mean",
        ignore_index: int | None = None,
    ):
        super().__init__(activation=activation, reduction=reduction, ignore_index=ignore_index)
        if not gamma >= 0:
            raise ValueError(f"gamma={gamma} must be >= 0")
        self.gamma = float(gamma)
        alpha_vec = as_class_vector("alpha", alpha)
        if alpha_vec is not None and activation == "softmax" and alpha_vec.numel() == 1:
            raise ValueError(f"alpha={alpha} must give one weight per class with activation='softmax'")
        if alpha_vec is not None and activation == "sigmoid" and (alpha_vec > 1).any():
            raise ValueError(f"alpha={alpha} must lie in [0, 1] with activation='sigmoid'")
        self.register_buffer("alpha", alpha_vec, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss from logits ``(B, C, ...)`` and integer target ``(B, 1, ...)``."""
        logits, onehot, mask = self._prepare(logits, target)
        loss = focal_per_voxel(logits, onehot, activation=self.activation, gamma=self.gamma, alpha=self.alpha)
        return reduce_loss(loss, self.reduction, mask)
