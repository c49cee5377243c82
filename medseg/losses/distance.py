"""Distance-based losses in mm: Hausdorff distance-transform loss and boundary loss.

MONAI's ``HausdorffDTLoss`` and ``BoundaryLoss`` measure distances in voxels, whatever the spacing; these
take ``spacing_mm``. The target's maps come precomputed from the data pipeline (:mod:`medseg.losses.maps`).
The Hausdorff loss also needs the distance field of the thresholded prediction at every step: on CPU it is
:func:`scipy.ndimage.distance_transform_edt` (as MONAI), on CUDA our exact separable transform in torch
(:func:`distance_field`), which avoids MONAI's device -> host copy and runs all channels at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from medseg.geometry import check_spacing
from medseg.losses._functional import activate, masked_mean, reduce_loss, select_channels
from medseg.losses.base import SegLoss
from medseg.losses.maps import boundary_distance_map, inside_distance, signed_distance_map

__all__ = ["BoundaryLoss", "HausdorffDTLoss", "distance_field"]

log = logging.getLogger(__name__)
_CHUNK = 1 << 25  # elements per min-plus block in the torch distance transform


def _squared_edt_torch(seeds: torch.Tensor, spacing: Sequence[float]) -> torch.Tensor:
    """Exact squared Euclidean distance to the nearest ``True`` of ``seeds`` ``(N, *spatial)``, in mm^2.

    Separable min-plus transform (Saito & Toriwaki 1994): along each axis ``f(x) = min_i g(i) + s^2 (x-i)^2``.
    O(n) work per voxel and axis, so it is for GPUs; voxels with no seed get ``inf``.
    """
    dist = torch.where(seeds, 0.0, float("inf")).to(torch.float32)
    for axis, step in enumerate(spacing, start=1):
        moved = dist.movedim(axis, -1)
        n = moved.shape[-1]
        idx = torch.arange(n, device=dist.device, dtype=torch.float32)
        offsets = (idx[:, None] - idx[None, :]) ** 2 * float(step) ** 2  # (x, i)
        rows = moved.reshape(-1, n)
        out = torch.empty_like(rows)
        block = max(1, _CHUNK // (n * n))
        for start in range(0, rows.shape[0], block):
            part = rows[start : start + block]
            out[start : start + block] = (part[:, None, :] + offsets[None]).amin(-1)
        dist = out.reshape(moved.shape).movedim(-1, axis)
    return dist


@torch.no_grad()
def distance_field(masks: torch.Tensor, *, spacing_mm: Sequence[float], backend: str = "auto") -> torch.Tensor:
    """Distance (mm) from each voxel to the nearest voxel on the other side of the mask boundary.

    ``edt(mask) + edt(~mask)`` as in Karimi & Salcudean (2019) and MONAI's ``HausdorffDTLoss.distance_field``,
    with spacing. An empty or full mask gives zeros.

    Args:
        masks: Boolean ``(N, H, W[, D])``.
        spacing_mm: Voxel size per spatial axis.
        backend: ``"scipy"``, ``"torch"`` (exact separable transform, for GPUs) or ``"auto"`` (torch on CUDA).

    Returns:
        float32 ``(N, H, W[, D])`` on the device of ``masks``.
    """
    if backend not in ("auto", "scipy", "torch"):
        raise ValueError(f"backend={backend!r} is not one of 'auto', 'scipy', 'torch'")
    if len(spacing_mm) != masks.ndim - 1:
        raise ValueError(f"spacing_mm={tuple(spacing_mm)} needs {masks.ndim - 1} values for masks {tuple(masks.shape)}")
    spatial = tuple(range(1, masks.ndim))
    nontrivial = masks.any(dim=spatial) & ~masks.all(dim=spatial)
    out = torch.zeros(masks.shape, dtype=torch.float32, device=masks.device)
    if not bool(nontrivial.any()):
        return out
    todo = masks[nontrivial]
    if backend == "torch" or (backend == "auto" and masks.is_cuda):
        both = _squared_edt_torch(torch.cat([~todo, todo]), spacing_mm).sqrt()
        out[nontrivial] = both[: len(todo)] + both[len(todo) :]
    else:
        arr = todo.cpu().numpy()
        fields = [inside_distance(m, spacing_mm) + ndimage.distance_transform_edt(~m, sampling=spacing_mm) for m in arr]
        out[nontrivial] = torch.from_numpy(np.stack(fields).astype(np.float32)).to(out.device)
    return out


def _spacing_tuple(spacing_mm: Sequence[float] | None, name: str) -> tuple[float, ...] | None:
    if spacing_mm is None:
        return None
    return tuple(float(s) for s in check_spacing(spacing_mm, (2, 3), name=f"{name}: spacing_mm"))


def _check_spacing(spacing: tuple[float, ...], logits: torch.Tensor, name: str) -> None:
    if len(spacing) != logits.ndim - 2:
        raise ValueError(f"{name}: spacing_mm={spacing} has {len(spacing)} values for {logits.ndim - 2}-D logits")


def _check_map(name: str, value: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    if value.shape != logits.shape:
        raise ValueError(f"{name} must be (B, C, *spatial) = {tuple(logits.shape)}, got {tuple(value.shape)}")
    return value.to(logits)


class HausdorffDTLoss(SegLoss):
    """Hausdorff distance loss, distance-transform form (Karimi & Salcudean, IEEE TMI 2019, eq. 8), in mm.

    ``mean_x (p - q)^2 (d_p^alpha + d_q^alpha)`` per sample and class, where ``d_q`` is the distance field of the
    target (``target_distance``, precomputed) and ``d_p`` that of the prediction thresholded at 0.5, computed
    every step without gradient. Values are in mm^alpha, so they scale with the spacing.

    ``forward(logits, target, *, target_distance=None)``: ``target_distance`` ``(B, C, H, W[, D])`` from
    :func:`~medseg.losses.compute_maps` (all C channels); computed from the target when not given.

    Args:
        spacing_mm: Voxel size per spatial axis (required; ``(1, 1, 1)`` reproduces MONAI's voxel units).
        alpha: Exponent of the distances (default 2).
        activation: ``"softmax"`` or ``"sigmoid"``.
        include_background: Keep channel 0 (default False, as MONAI; each kept channel costs two distance
            transforms of the prediction per sample and step).
        reduction: ``"mean"``/``"sum"`` over samples and classes or ``"none"``: ``(B, C')``.
        ignore_index: Label value of voxels that are not annotated: ``d_q`` is measured between annotated
            voxels (:func:`~medseg.losses.boundary_distance_map`) and the mean is over annotated voxels;
            ``d_p``, of the dense prediction, is measured everywhere.
    """

    required_maps = frozenset({"target_distance"})
    accepted_maps = required_maps

    def __init__(
        self,
        *,
        spacing_mm: Sequence[float],
        alpha: float = 2.0,
        activation: str = "softmax",
        include_background: bool = False,
        reduction: str = "mean",
        ignore_index: int | None = None,
    ):
        super().__init__(activation=activation, reduction=reduction, ignore_index=ignore_index)
        self.spacing_mm = _spacing_tuple(spacing_mm, "hausdorff")
        if not alpha > 0:
            raise ValueError(f"alpha={alpha} must be > 0")
        self.alpha = float(alpha)
        self.include_background = bool(include_background)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, *, target_distance: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Loss from logits ``(B, C, ...)``, target ``(B, 1, ...)`` and optional ``target_distance`` ``(B, C, ...)``."""
        logits, onehot, mask = self._prepare(logits, target)
        _check_spacing(self.spacing_mm, logits, "hausdorff")
        if target_distance is None:
            labels = target[:, 0].detach().cpu().numpy().astype(np.int64)
            maps = [boundary_distance_map(lab, num_classes=logits.shape[1], spacing_mm=self.spacing_mm,
                                          ignore_label=self.ignore_index) for lab in labels]  # fmt: skip
            target_distance = torch.from_numpy(np.stack(maps))
        target_distance = _check_map("target_distance", target_distance.to(logits.device), logits)
        probs = select_channels(activate(logits, self.activation), self.include_background)
        onehot = select_channels(onehot, self.include_background)
        d_q = select_channels(target_distance, self.include_background)
        d_p = distance_field(probs.detach().flatten(0, 1) > 0.5, spacing_mm=self.spacing_mm).reshape(probs.shape)
        weight = d_p.to(probs).pow(self.alpha) + d_q.pow(self.alpha)
        return reduce_loss(masked_mean((probs - onehot) ** 2 * weight, mask), self.reduction)


class BoundaryLoss(SegLoss):
    """Boundary loss ``mean_x p(x) phi(x)`` per sample and class (Kervadec et al., MIDL 2019 / MedIA 2021), mm.

    ``phi`` is the target's signed distance map (negative inside, see
    :func:`~medseg.losses.signed_distance_map`); the loss is smallest, and negative, for the perfect
    prediction. Use it with a region loss and a ramped weight (see :class:`~medseg.losses.CompoundLoss`).

    ``forward(logits, target, *, distance_map)``: ``distance_map`` ``(B, C, H, W[, D])`` precomputed by the
    data pipeline. Without it the map is computed here from the target (slow, needs ``spacing_mm``).

    Args:
        activation: ``"softmax"`` or ``"sigmoid"``.
        include_background: Keep channel 0 (default False, as Kervadec et al.).
        spacing_mm: Voxel size, only for the on-the-fly fallback.
        reduction: ``"mean"``/``"sum"`` over samples and classes or ``"none"``: ``(B, C')``.
        ignore_index: Label value of voxels that are not annotated: ``phi`` is measured between annotated
            voxels (:func:`~medseg.losses.signed_distance_map`) and the mean is over annotated voxels.
    """

    required_maps = frozenset({"distance_map"})
    accepted_maps = required_maps

    def __init__(
        self,
        *,
        activation: str = "softmax",
        include_background: bool = False,
        spacing_mm: Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int | None = None,
    ):
        super().__init__(activation=activation, reduction=reduction, ignore_index=ignore_index)
        self.include_background = bool(include_background)
        self.spacing_mm = _spacing_tuple(spacing_mm, "boundary")

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, *, distance_map: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Loss from logits ``(B, C, ...)``, target ``(B, 1, ...)`` and ``distance_map`` ``(B, C, ...)``."""
        logits, _, mask = self._prepare(logits, target)
        if distance_map is None:
            if self.spacing_mm is None:
                raise ValueError("boundary: forward needs distance_map=(B, C, ...) (or construct with spacing_mm)")
            _check_spacing(self.spacing_mm, logits, "boundary")
            log.debug("boundary: computing distance_map on the fly; precompute it in the data pipeline")
            labels = target[:, 0].detach().cpu().numpy().astype(np.int64)
            maps = [signed_distance_map(lab, num_classes=logits.shape[1], spacing_mm=self.spacing_mm,
                                        ignore_label=self.ignore_index) for lab in labels]  # fmt: skip
            distance_map = torch.from_numpy(np.stack(maps))
        phi = select_channels(
            _check_map("distance_map", distance_map.to(logits.device), logits), self.include_background
        )
        probs = select_channels(activate(logits, self.activation), self.include_background)
        return reduce_loss(masked_mean(probs * phi, mask), self.reduction)
