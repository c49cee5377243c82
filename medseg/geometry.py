"""Voxel geometry rules used by several stages: spacing checks, voxel volume, bounding boxes.

``spacing_mm[i]`` is the voxel size along array axis ``i`` in millimetres, as everywhere in medseg. The
bounding box is our own: :func:`scipy.ndimage.find_objects` needs an integer copy of the mask and
scans it whole, while :func:`bounding_box` reduces over the occupied slab only and never copies the
volume, whatever its memory order (NIfTI volumes from nibabel are usually Fortran-ordered).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["axis_skew_deg", "bounding_box", "check_spacing", "grow_box", "joint_bounding_box", "metric_axes_mm",
           "touches_border", "voxel_volume_ml"]


def check_spacing(spacing_mm: Sequence[float], ndim: int | Sequence[int], *, name: str = "spacing_mm") -> np.ndarray:
    """Validate a voxel spacing and return it as a float array (mm).

    Args:
        spacing_mm: One voxel size per array axis, in mm.
        ndim: The number of axes it must have, or the numbers allowed (``(2, 3)``).
        name: The argument's name in the error message.

    Returns:
        ``spacing_mm`` as a 1D float64 array.

    Raises:
        ValueError: Wrong number of entries, or an entry that is not a positive finite number; the
            message names ``name`` and the value.
    """
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    count = " or ".join(str(n) for n in allowed)
    try:
        spacing = np.asarray(spacing_mm, dtype=float).ravel()
    except (TypeError, ValueError):
        spacing = None
    if spacing is None or spacing.size not in allowed or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        # the message is built only here: repr of an array costs more than the check (per-lesion scores call it)
        raise ValueError(f"{name} must be {count} positive finite numbers (one per array axis), got {spacing_mm!r}")
    return spacing


def voxel_volume_ml(spacing_mm: Sequence[float], *, affine: np.ndarray | None = None) -> float:
    """Volume of one voxel in mL.

    With ``affine`` (a ``(4, 4)`` or ``(3, 3)`` voxel-to-world matrix) it is ``|det|`` of its 3x3 part
    (mm^3) / 1000: the exact volume of the parallelepiped a voxel spans, also for a gantry-tilted series or
    a sheared NIfTI sform, where the product of the axis lengths overestimates it (by ``1 / cos(25°)``,
    +10.3%, for a 25° tilt). Without it, the product of ``spacing_mm`` (axes assumed orthogonal; for 2D
    spacing, the pixel area in mm^2 / 1000).
    """
    if affine is not None:
        return abs(float(np.linalg.det(np.asarray(affine, dtype=float)[:3, :3]))) / 1000.0
    return float(np.prod(np.asarray(spacing_mm, dtype=float))) / 1000.0


def axis_skew_deg(affine: np.ndarray) -> float:
    """Largest deviation from 90° (degrees) between two voxel axes of ``affine`` (0 for an orthogonal grid;
    the tilt angle for a gantry-tilted CT series)."""
    axes = np.asarray(affine, dtype=float)[:3, :3]
    unit = axes / np.linalg.norm(axes, axis=0, keepdims=True)
    cosines = np.abs(unit.T @ unit)[np.triu_indices(3, 1)]
    return float(np.degrees(np.arcsin(np.clip(cosines.max(), 0.0, 1.0))))


def metric_axes_mm(axes: np.ndarray) -> np.ndarray:
    """``(d, d)`` upper-triangular matrix ``R`` with ``axes = Q @ R`` (``Q`` orthonormal, QR decomposition).

    ``axes`` is ``(k, d)``, ``k >= d``: column ``i`` is the world step (mm) of one voxel along array axis
    ``i`` (the affine's 3x3, or two of its columns for an in-slice measurement). ``R @ index`` has the same
    distances as the world points ``axes @ index``, in ``d`` coordinates: what distance measurements on a
    tilted or sheared grid need. For orthogonal axes ``R`` is ``diag(spacing)``.
    """
    r = np.linalg.qr(np.asarray(axes, dtype=float), mode="r")
    return r * np.sign(np.diag(r))[:, None]  # positive diagonal: the same handedness as the index axes


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Smallest box holding every non-zero voxel of ``mask``, as one ``slice`` per axis; ``None`` if empty.

    One ``any`` over the outermost axis in memory (a view, for C- and Fortran-ordered arrays alike), then
    only the occupied slab: about one pass over the data (~10 ms for a 512x512x300 mask) and no copy of
    the volume.

    Args:
        mask: Boolean (or integer: non-zero is foreground) array of any shape.
    """
    mask = np.asarray(mask)  # integer masks are reduced as they are: ``mask != 0`` would copy the volume
    if mask.ndim == 0 or mask.size == 0:
        return None
    order = sorted(range(mask.ndim), key=lambda a: -abs(mask.strides[a]))  # outermost axis in memory first
    view = mask.transpose(order)
    rest = tuple(range(1, view.ndim))
    if view.flags.c_contiguous:
        outer = view.reshape(view.shape[0], -1).any(axis=1)
    else:
        outer = view.any(axis=rest) if rest else view
    rows = np.flatnonzero(outer)
    if rows.size == 0:
        return None
    box = {order[0]: slice(int(rows[0]), int(rows[-1]) + 1)}
    if rest:
        slab = view[rows[0] : rows[-1] + 1].any(axis=0)
        for k in range(slab.ndim):
            other = tuple(a for a in range(slab.ndim) if a != k)
            idx = np.flatnonzero(slab.any(axis=other) if other else slab)
            box[order[k + 1]] = slice(int(idx[0]), int(idx[-1]) + 1)
    return tuple(box[a] for a in range(mask.ndim))


def joint_bounding_box(*masks: np.ndarray) -> tuple[slice, ...] | None:
    """Smallest box holding every non-zero voxel of all ``masks`` (same shape); ``None`` if all are empty.

    Each mask's :func:`bounding_box` (no copy), then their union.
    """
    boxes = [b for b in (bounding_box(m) for m in masks) if b is not None]
    if not boxes:
        return None
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(len(boxes[0])))


def touches_border(mask: np.ndarray) -> bool:
    """Whether any non-zero voxel of ``mask`` lies on the array border (its bounding box reaches an edge).

    A structure touching the border may continue outside the field of view. Computed from
    :func:`bounding_box`, so it costs one pass and no copy (``np.take`` of a border plane copies a
    Fortran-ordered volume whole, once per plane).
    """
    mask = np.asarray(mask)
    box = bounding_box(mask)
    return box is not None and any(s.start == 0 or s.stop == n for s, n in zip(box, mask.shape))


def grow_box(box: Sequence[slice], margin: int | Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    """``box`` grown by ``margin`` voxels per side (one value, or one per axis), clamped to ``shape``."""
    margins = [int(margin)] * len(box) if np.isscalar(margin) else [int(m) for m in margin]
    if len(margins) != len(box) or len(shape) != len(box):
        raise ValueError(f"box {tuple(box)}, margin {margin!r} and shape {tuple(shape)} must have one entry per axis")
    return tuple(slice(max(0, s.start - m), min(int(n), s.stop + m)) for s, m, n in zip(box, margins, shape))
