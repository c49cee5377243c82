"""Surface distances between two binary masks, exact and restricted to the region around the surfaces.

Conventions (identical to MONAI's ``compute_hausdorff_distance``, ``compute_average_surface_distance``
and ``compute_surface_dice`` without sub-voxels; not to DeepMind's ``surface-distance``, which places
surface elements on the voxel corners and weights each by its area, see ``docs/metrics.md``):

* the surface ``dA`` of a mask ``A`` is the set of foreground voxels with at least one face-neighbour in
  the background (``connectivity=1``); the image border counts as background, so a mask touching the edge
  is closed there. ``connectivity=2`` adds edge-neighbours: ``A ^ binary_erosion(A, 18-neighbourhood)``,
  the surface of the LiTS 2017 scorer and of medpy's ``Surface`` class (:mod:`medseg.evaluation.lits2017`);
* ``d(a, dB)`` is the Euclidean distance in mm from the centre of surface voxel ``a`` to the nearest
  voxel centre of ``dB`` (0 for a voxel on both surfaces);
* HD95 is the larger of the two directed 95th percentiles (linear interpolation, as ``numpy.percentile``
  and ``torch.quantile``); MSSD is the Hausdorff distance (the largest of all distances); ASSD and RMSD
  pool both directions: ``sum / (|dA| + |dB|)``; NSD counts the surface voxels of both masks within the
  tolerance (distance <= tolerance) over ``|dA| + |dB|`` (Nikolov et al., 2021, arXiv:2111.05408).

Why not call MONAI: it converts the full volume to float tensors and pads/crops it for every metric (about
2 s and 0.9 GB for one LiTS-size pair, per metric). Here the masks are cropped once to the joint bounding
box of both surfaces plus one background voxel (exact: every nearest other-surface voxel lies inside that
box, and the margin keeps the border rule), surfaces are found with six shifted ANDs (about 7x faster than
``scipy.ndimage.binary_erosion`` on the crop, same result), and each surface voxel is matched to the other
surface with a ``scipy.spatial.cKDTree`` query (voxels on both surfaces are 0 and skip the query; for large
surfaces the two directions run in two threads). A dense
``distance_transform_edt`` over the crop is 3-4x slower than the tree for liver-size surfaces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from medseg.boxes import joint_bounding_box
from medseg.geometry import check_spacing

__all__ = [
    "crop_pair",
    "distance_metrics",
    "surface_distances",
    "surface_metrics",
    "surface_voxels",
]

# A distance equal to the NSD tolerance counts as within it; this relative slack absorbs float rounding
# of sqrt(sum of squares) so that e.g. sqrt(4 * 0.5**2) == 1.0 is never pushed above a 1.0 mm tolerance.
_TOLERANCE_SLACK = 1e-9
# Surface sizes (voxels, both masks) above which the two directions run in two threads.
_THREADED_ABOVE = 20_000


def crop_pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Crop two same-shape boolean masks to their joint bounding box plus one background voxel each side.

    The added margin is zero (background), so surface voxels and all surface distances of the crop are
    those of the full arrays, with the image border still counting as background. Returns ``None`` when
    both masks are empty.
    """
    window = joint_bounding_box(pred, ref)
    if window is None:
        return None
    inner = tuple(slice(1, s.stop - s.start + 1) for s in window)
    out = []
    for mask in (pred, ref):
        padded = np.zeros(tuple(s.stop - s.start + 2 for s in window), dtype=bool)
        padded[inner] = mask[window]
        out.append(padded)
    return out[0], out[1]


def surface_voxels(mask: np.ndarray, *, connectivity: int = 1) -> np.ndarray:
    """Foreground voxels with a neighbour in the background (the border counts as background).

    With ``connectivity=1`` (face-neighbours) equal to ``mask & ~scipy.ndimage.binary_erosion(mask)``
    (MONAI's ``get_mask_edges`` edges), computed with one AND per axis and direction, which is several
    times faster on large crops. A higher rank erodes with
    ``scipy.ndimage.generate_binary_structure(ndim, connectivity)``: 2 = faces and edges (the
    18-neighbourhood in 3D, used by the LiTS 2017 scorer), which gives a thicker surface.

    Args:
        mask: ``(H, W[, D])`` boolean array (any number of dimensions).
        connectivity: Neighbourhood rank, 1..``mask.ndim``.
    """
    mask = np.asarray(mask, dtype=bool)
    if not 1 <= connectivity <= max(mask.ndim, 1):
        raise ValueError(f"connectivity must be 1..{mask.ndim} for a {mask.ndim}D mask, got {connectivity!r}")
    if connectivity > 1:
        structure = ndimage.generate_binary_structure(mask.ndim, connectivity)
        return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)
    interior = mask.copy()
    for axis in range(mask.ndim):
        n = mask.shape[axis]
        if n < 3:  # every voxel touches the border along this axis
            interior[...] = False
            break
        core = [slice(None)] * mask.ndim
        core[axis] = slice(1, n - 1)
        for shift in (slice(0, n - 2), slice(2, n)):
            neighbour = [slice(None)] * mask.ndim
            neighbour[axis] = shift
            interior[tuple(core)] &= mask[tuple(neighbour)]
        edge = [slice(None)] * mask.ndim
        edge[axis] = [0, n - 1]
        interior[tuple(edge)] = False
    return mask & ~interior


def _directed_distances(surface_from: np.ndarray, surface_to: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance (mm) from every voxel of ``surface_from`` (C order) to the nearest voxel of ``surface_to``."""
    off = surface_from & ~surface_to  # voxels on both surfaces are at distance 0
    distances = np.zeros(int(np.count_nonzero(surface_from)), dtype=float)
    if off.any():
        tree = cKDTree(np.argwhere(surface_to) * spacing, leafsize=32, balanced_tree=False, compact_nodes=False)
        distances[off[surface_from]] = tree.query(np.argwhere(off) * spacing, k=1)[0]
    return distances


def surface_distances(
    pred: np.ndarray,
    ref: np.ndarray,
    *,
    spacing_mm: Sequence[float],
    cropped: bool = False,
    connectivity: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of one mask to the surface of the other, both directions.

    Args:
        pred: ``(H, W[, D])`` boolean mask.
        ref: Boolean mask of the same shape.
        spacing_mm: Voxel size along each array axis, in mm.
        cropped: The inputs already come from :func:`crop_pair` (skips the bounding-box pass).
        connectivity: Neighbourhood rank that defines the surface (:func:`surface_voxels`).

    Returns:
        ``(d_pred_to_ref, d_ref_to_pred)``: 1-D float arrays with one entry per surface voxel of ``pred``
        and of ``ref`` (in C order of the voxels). If exactly one mask is empty its array holds no entries
        and the other is all ``inf``; both empty gives two empty arrays.
    """
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred.shape} and {ref.shape}")
    spacing = check_spacing(spacing_mm, pred.ndim)
    if not cropped:
        pair = crop_pair(pred, ref)
        if pair is None:
            return np.zeros(0), np.zeros(0)
        pred, ref = pair
    surface_pred = surface_voxels(pred, connectivity=connectivity)
    surface_ref = surface_voxels(ref, connectivity=connectivity)
    n_pred, n_ref = int(np.count_nonzero(surface_pred)), int(np.count_nonzero(surface_ref))
    if n_pred == 0 or n_ref == 0:
        return np.full(n_pred, np.inf), np.full(n_ref, np.inf)
    if n_pred + n_ref < _THREADED_ABOVE:
        return _directed_distances(surface_pred, surface_ref, spacing), _directed_distances(
            surface_ref, surface_pred, spacing
        )
    # large surfaces: the two directions in two threads (cKDTree releases the GIL while querying)
    with ThreadPoolExecutor(max_workers=2) as pool:
        forward = pool.submit(_directed_distances, surface_pred, surface_ref, spacing)
        backward = pool.submit(_directed_distances, surface_ref, surface_pred, spacing)
        return forward.result(), backward.result()


def distance_metrics(
    d_pred_to_ref: np.ndarray, d_ref_to_pred: np.ndarray, *, nsd_tolerance_mm: float = 2.0
) -> dict[str, float]:
    """ASSD, MSSD (Hausdorff), HD95, RMSD (mm) and NSD from the two directed surface-distance sets.

    Empty masks: both surfaces empty (both masks empty) gives distances 0 and NSD 1 (a perfect
    prediction of an absent structure); exactly one empty gives NaN distances (undefined, and skipped by
    aggregation rather than replaced by an arbitrary penalty) and NSD 0 (no boundary is correct).
    """
    d_pr, d_rp = np.asarray(d_pred_to_ref, dtype=float), np.asarray(d_ref_to_pred, dtype=float)
    n = d_pr.size + d_rp.size
    if n == 0:
        return {"assd_mm": 0.0, "mssd_mm": 0.0, "hd95_mm": 0.0, "rmsd_mm": 0.0, "nsd": 1.0}
    if d_pr.size == 0 or d_rp.size == 0:
        return {"assd_mm": math.nan, "mssd_mm": math.nan, "hd95_mm": math.nan, "rmsd_mm": math.nan, "nsd": 0.0}
    if not math.isfinite(nsd_tolerance_mm) or nsd_tolerance_mm < 0:
        raise ValueError(f"nsd_tolerance_mm must be a finite number >= 0, got {nsd_tolerance_mm!r}")
    limit = nsd_tolerance_mm * (1.0 + _TOLERANCE_SLACK)
    within = int(np.count_nonzero(d_pr <= limit)) + int(np.count_nonzero(d_rp <= limit))
    return {
        "assd_mm": float((d_pr.sum() + d_rp.sum()) / n),
        "mssd_mm": float(max(d_pr.max(), d_rp.max())),
        "hd95_mm": float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95))),
        "rmsd_mm": float(math.sqrt((np.square(d_pr).sum() + np.square(d_rp).sum()) / n)),
        "nsd": within / n,
    }


def surface_metrics(
    pred: np.ndarray, ref: np.ndarray, *, spacing_mm: Sequence[float], nsd_tolerance_mm: float = 2.0
) -> dict[str, float]:
    """ASSD, MSSD, HD95, RMSD (mm) and normalised surface Dice of two binary masks, from one pass.

    Args:
        pred: ``(H, W[, D])`` predicted mask (nonzero = foreground).
        ref: Reference mask of the same shape.
        spacing_mm: Voxel size along each array axis, in mm.
        nsd_tolerance_mm: Surface-Dice tolerance in mm (Nikolov et al., 2021).

    Returns:
        ``{"assd_mm", "mssd_mm", "hd95_mm", "rmsd_mm", "nsd"}`` (see :func:`distance_metrics` for empty
        masks).
    """
    d_pr, d_rp = surface_distances(pred, ref, spacing_mm=spacing_mm)
    return distance_metrics(d_pr, d_rp, nsd_tolerance_mm=nsd_tolerance_mm)
