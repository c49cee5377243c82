"""Every per-mask figure of one prediction/reference pair from a single call: :func:`binary_metrics`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from medseg.evaluation.overlap import overlap_from_counts
from medseg.evaluation.surface import crop_pair, distance_metrics, surface_distances
from medseg.geometry import check_spacing, voxel_volume_ml

__all__ = ["BINARY_METRIC_KEYS", "binary_metrics"]

#: Keys of :func:`binary_metrics`, in the order reports list them.
BINARY_METRIC_KEYS = (
    "dice",
    "jaccard",
    "voe",
    "rvd",
    "assd_mm",
    "mssd_mm",
    "hd95_mm",
    "rmsd_mm",
    "nsd",
    "pred_volume_ml",
    "ref_volume_ml",
)


def binary_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    *,
    spacing_mm: Sequence[float],
    nsd_tolerance_mm: float = 2.0,
    affine: np.ndarray | None = None,
) -> dict[str, float]:
    """Overlap, surface-distance and volume metrics of a binary prediction against a reference.

    Both masks are cropped once to their joint bounding box (plus a background margin); overlap counts,
    surfaces and distances are computed on the crop, so the cost scales with the structure, not the scan.
    Formulas and empty-mask conventions: :mod:`medseg.evaluation.overlap`, :mod:`medseg.evaluation.surface`
    and ``docs/metrics.md``.

    Args:
        pred: ``(H, W)`` or ``(H, W, D)`` predicted mask (boolean, or nonzero = foreground).
        ref: Reference mask of the same shape.
        spacing_mm: Voxel size along each array axis, in mm.
        nsd_tolerance_mm: Tolerance of the normalised surface Dice, in mm.
        affine: ``(4, 4)`` voxel-to-world affine of the grid: volumes use ``|det|`` of its 3x3, the true voxel
            volume on a tilted or sheared grid; ``None``: the product of ``spacing_mm``. Surface distances
            use ``spacing_mm`` (orthogonal axes) either way.

    Returns:
        A dict with the keys :data:`BINARY_METRIC_KEYS`: ``dice, jaccard, voe, rvd, assd_mm, mssd_mm,
        hd95_mm, rmsd_mm, nsd, pred_volume_ml, ref_volume_ml`` (volumes are voxel counts times the
        voxel volume; for 2D input, the pixel area in mm^2 / 1000).

    Example:
        >>> import numpy as np
        >>> a = np.zeros((10, 10, 10), bool); a[2:6, 2:6, 2:6] = True
        >>> b = np.roll(a, 1, axis=0)
        >>> m = binary_metrics(a, b, spacing_mm=(2.0, 1.0, 1.0))
        >>> round(m["dice"], 3), m["mssd_mm"]
        (0.75, 2.0)
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred.shape} and {ref.shape}")
    if pred.ndim not in (2, 3):
        raise ValueError(f"pred and ref must be 2D or 3D arrays, got {pred.ndim} dimensions")
    spacing = check_spacing(spacing_mm, pred.ndim)
    if not math.isfinite(nsd_tolerance_mm) or nsd_tolerance_mm < 0:
        raise ValueError(f"nsd_tolerance_mm must be a finite number >= 0, got {nsd_tolerance_mm!r}")
    pred = pred if pred.dtype == bool else pred != 0
    ref = ref if ref.dtype == bool else ref != 0
    voxel_ml = voxel_volume_ml(spacing, affine=affine)

    pair = crop_pair(pred, ref)
    if pair is None:
        counts = (0, 0, 0)
        d_pr, d_rp = np.zeros(0), np.zeros(0)
    else:
        pred_c, ref_c = pair
        counts = (
            int(np.count_nonzero(pred_c)),
            int(np.count_nonzero(ref_c)),
            int(np.count_nonzero(pred_c & ref_c)),
        )
        d_pr, d_rp = surface_distances(pred_c, ref_c, spacing_mm=spacing, cropped=True)
    result = overlap_from_counts(*counts)
    result.update(distance_metrics(d_pr, d_rp, nsd_tolerance_mm=nsd_tolerance_mm))
    result["pred_volume_ml"] = counts[0] * voxel_ml
    result["ref_volume_ml"] = counts[1] * voxel_ml
    return {key: float(result[key]) for key in BINARY_METRIC_KEYS}
