"""Boxes: the bounding box of a mask, the union of boxes, growth by a margin or to a window, and a box
carried from one grid to another.

A box is a tuple of ``slice`` objects, one per array axis, with integer ``start`` and ``stop``
(``stop`` exclusive), usable as ``array[box]`` (a view). The bounding box is our own:
:func:`scipy.ndimage.find_objects` needs an integer copy of the mask and scans it whole, while
:func:`bounding_box` reduces over the occupied slab only and never copies the volume, whatever its memory
order (NIfTI volumes from nibabel are usually Fortran-ordered).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "Box",
    "bounding_box",
    "box_on_grid",
    "grow_box",
    "grow_to_window",
    "joint_bounding_box",
    "touches_border",
    "union_box",
]

#: One ``slice`` per array axis (integer ``start`` and ``stop``).
Box = tuple[slice, ...]


def bounding_box(mask: np.ndarray, *, margin: int | Sequence[int] | None = None) -> Box | None:
    """Smallest box holding every non-zero voxel of ``mask``, as one ``slice`` per axis; ``None`` if empty.

    One ``any`` over the outermost axis in memory (a view, for C- and Fortran-ordered arrays alike), then
    only the occupied slab: about one pass over the data (~10 ms for a 512x512x300 mask) and no copy of
    the volume.

    Args:
        mask: Boolean (or integer: non-zero is foreground) array of any shape.
        margin: Voxels added each side (one value, or one per axis), clamped to ``mask.shape``
            (:func:`grow_box`); ``None``: the tight box.
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
    tight = tuple(box[a] for a in range(mask.ndim))
    return tight if margin is None else grow_box(tight, margin, mask.shape)


def union_box(boxes: Sequence[Box]) -> Box:
    """The smallest box holding all ``boxes`` (at least one, all with the same number of axes)."""
    if not boxes:
        raise ValueError("union_box needs at least one box, got none")
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(len(boxes[0])))


def joint_bounding_box(*masks: np.ndarray) -> Box | None:
    """Smallest box holding every non-zero voxel of all ``masks`` (same shape); ``None`` if all are empty.

    Each mask's :func:`bounding_box` (no copy), then their :func:`union_box`.
    """
    boxes = [b for b in (bounding_box(m) for m in masks) if b is not None]
    return union_box(boxes) if boxes else None


def touches_border(mask: np.ndarray) -> bool:
    """Whether any non-zero voxel of ``mask`` lies on the array border (its bounding box reaches an edge).

    A structure touching the border may continue outside the field of view. Computed from
    :func:`bounding_box`, so it costs one pass and no copy (``np.take`` of a border plane copies a
    Fortran-ordered volume whole, once per plane).
    """
    mask = np.asarray(mask)
    box = bounding_box(mask)
    return box is not None and any(s.start == 0 or s.stop == n for s, n in zip(box, mask.shape))


def grow_box(box: Sequence[slice], margin: int | Sequence[int], shape: Sequence[int]) -> Box:
    """``box`` grown by ``margin`` voxels per side (one value, or one per axis), clamped to ``shape``."""
    margins = [int(margin)] * len(box) if np.isscalar(margin) else [int(m) for m in margin]
    if len(margins) != len(box) or len(shape) != len(box):
        raise ValueError(f"box {tuple(box)}, margin {margin!r} and shape {tuple(shape)} must have one entry per axis")
    return tuple(slice(max(0, s.start - m), min(int(n), s.stop + m)) for s, m, n in zip(box, margins, shape))


def grow_to_window(box: Sequence[slice], shape: Sequence[int], window: Sequence[int]) -> Box:
    """``box`` grown about its centre to at least one ``window`` per axis, kept inside ``shape``.

    An axis already as long as the window (or as the whole axis, when that is shorter) is left as it is;
    a shorter one becomes ``min(window, n)`` long, centred on the box (rounded down), shifted inward where
    it would cross an edge.
    """
    out = []
    for s, n, w in zip(box, shape, window):
        lo, hi = s.start, s.stop
        need = min(w, n)
        if hi - lo < need:
            lo = max(0, min((lo + hi) // 2 - need // 2, n - need))
            hi = lo + need
        out.append(slice(lo, hi))
    return tuple(out)


def box_on_grid(box: Sequence[slice], shape: Sequence[int], grid_shape: Sequence[int], *,
                margin: Sequence[float] | None = None) -> Box:
    """The region of ``box`` (on an array of ``shape``) on another grid of the same extent, ``grid_shape``.

    Voxel ``i`` of an axis of ``n`` voxels covers ``[i * m / n, (i + 1) * m / n)`` of the axis' ``m`` voxels
    on the other grid (the grid convention of the resampling), so the box becomes
    ``[floor(start * m / n - margin), ceil(stop * m / n + margin))``, clamped to ``grid_shape``: the
    smallest box on the other grid covering the region, grown by ``margin`` voxels of that grid per side.

    Args:
        box: One slice per axis on the first grid.
        shape: The first grid's shape.
        grid_shape: The other grid's shape.
        margin: Per axis, voxels of the other grid added each side (may be fractional); ``None``: none.
    """
    margin = [0.0] * len(box) if margin is None else list(margin)
    if not len(box) == len(shape) == len(grid_shape) == len(margin):
        raise ValueError(f"box {tuple(box)}, shape {tuple(shape)}, grid_shape {tuple(grid_shape)} and margin "
                         f"{margin!r} must have one entry per axis")
    out = []
    for s, n, m, pad in zip(box, shape, grid_shape, margin):
        scale = m / n
        lo = math.floor(s.start * scale - pad)
        hi = math.ceil(s.stop * scale + pad)
        out.append(slice(max(0, lo), min(m, hi)))
    return tuple(out)
