"""Lesion diameters in mm: maximal 3D diameter, longest axial (in-slice) diameter and RECIST short axis.

A diameter is the largest distance between two points of the segmented object's boundary, taken as the
centres of the voxel faces that separate the object from the background. These are exactly the vertices
of the marching-cubes (3D) or marching-squares (2D) surface at level 0.5, which PyRadiomics uses for its
``Maximum3DDiameter`` and ``Maximum2DDiameterSlice`` (van Griethuysen et al., Cancer Research 2017), so
values are comparable with radiomics tables; a single voxel measures one voxel width along its longest
axis. The farthest pair of points lies on their convex hull (``scipy.spatial.ConvexHull``), so only hull
vertices are compared. Voxel axes are orthogonal with ``spacing_mm``, unless the caller passes ``axes_mm``
(the affine's 3x3): then distances are the true ones on a gantry-tilted or sheared grid (points mapped by
:func:`medseg.geometry.metric_axes_mm`, which keeps distances), and an axial slice is the acquired slice.

RECIST 1.1 (Eisenhauer et al., Eur J Cancer 2009) measures a lesion by its longest diameter in the axial
plane and, in that same slice, the longest diameter perpendicular to it (the short axis).
:func:`recist_axes_mm` finds the slice with the longest axial diameter and then the longest chord
perpendicular to that diameter: the boundary points are binned along the long axis (bins one in-plane
voxel wide, so every bin holds points of both sides) and the largest extent across the long axis within
one bin is the short axis. For a convex lesion this is the longest perpendicular chord; for a concave
one it may span a notch, as a reader's calliper would. PyRadiomics has no short axis, hence our own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

from medseg.geometry import metric_axes_mm

__all__ = ["RecistAxes", "axial_diameter_mm", "boundary_points_mm", "max_diameter_mm", "recist_axes_mm"]


def boundary_points_mm(
    mask: np.ndarray, *, spacing_mm: Sequence[float], axes_mm: np.ndarray | None = None
) -> np.ndarray:
    """Centres (mm, relative to voxel ``(0, ..., 0)``) of all faces between ``mask`` and its background.

    Args:
        mask: ``(H, W[, D])`` boolean mask; the array border counts as background.
        spacing_mm: Voxel size along each axis, in mm.
        axes_mm: Optional ``(k, ndim)`` world step of each array axis (columns; the affine's 3x3 or some of
            its columns): the points then keep the true distances of a non-orthogonal grid.

    Returns:
        ``(N, ndim)`` float array (duplicates removed).
    """
    mask = np.asarray(mask, dtype=bool)
    spacing = np.asarray(spacing_mm, dtype=float)
    padded = np.pad(mask, 1)
    points = []
    for axis in range(mask.ndim):
        step = np.zeros(mask.ndim)
        step[axis] = 0.5
        for direction in (-1, 1):
            neighbour = np.roll(padded, -direction, axis=axis)
            faces = np.argwhere((padded & ~neighbour)[(slice(1, -1),) * mask.ndim])
            if faces.size:
                points.append(faces + direction * step)
    if not points:
        return np.zeros((0, mask.ndim))
    index = np.unique(np.concatenate(points), axis=0)
    return index * spacing if axes_mm is None else index @ metric_axes_mm(axes_mm).T


def _hull(points: np.ndarray) -> np.ndarray:
    """The convex hull vertices of ``points`` (all points when few)."""
    if len(points) <= 64:
        return points
    try:
        return points[ConvexHull(points).vertices]
    except QhullError:  # flat or collinear set: joggle to get a hull; vertices are still input points
        return points[ConvexHull(points, qhull_options="QJ").vertices]


def _diameter(points: np.ndarray) -> float:
    """Largest pairwise distance among ``points`` (``(N, d)``), via the convex hull when it pays."""
    if len(points) < 2:
        return 0.0
    return float(pdist(_hull(points)).max())


def _farthest_pair(points: np.ndarray) -> tuple[float, np.ndarray]:
    """Largest distance among 2D ``points`` and the unit vector between that pair."""
    hull = _hull(points)
    diff = hull[:, None, :] - hull[None, :, :]
    dist = np.linalg.norm(diff, axis=-1)
    i, j = np.unravel_index(int(np.argmax(dist)), dist.shape)
    length = float(dist[i, j])
    return length, diff[i, j] / length if length > 0 else np.array([1.0, 0.0])


def max_diameter_mm(mask: np.ndarray, *, spacing_mm: Sequence[float], axes_mm: np.ndarray | None = None) -> float:
    """Maximal diameter (mm) of the object in ``mask`` (``(H, W[, D])``); 0 for an empty mask; ``axes_mm``:
    see :func:`boundary_points_mm`."""
    return _diameter(boundary_points_mm(mask, spacing_mm=spacing_mm, axes_mm=axes_mm))


def axial_diameter_mm(mask: np.ndarray, *, spacing_mm: Sequence[float], axial_axis: int = 2) -> float:
    """Longest in-slice diameter (mm) over the slices perpendicular to ``axial_axis`` (RECIST-style).

    Args:
        mask: ``(H, W, D)`` boolean mask.
        spacing_mm: Voxel size along each array axis, in mm.
        axial_axis: The array axis closest to the patient's superior-inferior direction.
    """
    mask = np.moveaxis(np.asarray(mask, dtype=bool), axial_axis, 0)
    in_plane = [s for a, s in enumerate(spacing_mm) if a != axial_axis]
    occupied = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    return max((max_diameter_mm(mask[k], spacing_mm=in_plane) for k in occupied), default=0.0)


@dataclass(frozen=True)
class RecistAxes:
    """RECIST-style measurement of one lesion.

    Attributes:
        long_axis_mm: Longest in-slice diameter over the axial slices (mm); 0 for an empty mask.
        short_axis_mm: Longest diameter perpendicular to the long axis in the same slice (mm).
        slice_index: Index of that slice along the axial axis (``-1`` for an empty mask).
    """

    long_axis_mm: float
    short_axis_mm: float
    slice_index: int


def _short_axis_mm(points: np.ndarray, direction: np.ndarray, bin_mm: float) -> float:
    """Longest extent across ``direction`` among 2D ``points`` whose position along it agrees to ``bin_mm``."""
    normal = np.array([-direction[1], direction[0]])
    along, across = points @ direction, points @ normal
    bins = np.floor((along - along.min()) / bin_mm).astype(np.int64)
    order = np.argsort(bins, kind="stable")
    bins, across = bins[order], across[order]
    starts = np.flatnonzero(np.r_[True, np.diff(bins) > 0])
    return float(np.max(np.maximum.reduceat(across, starts) - np.minimum.reduceat(across, starts)))


def recist_axes_mm(
    mask: np.ndarray, *, spacing_mm: Sequence[float], axial_axis: int = 2, axes_mm: np.ndarray | None = None
) -> RecistAxes:
    """Long and short axis (mm) of the object in ``mask``, RECIST-style (see module docstring).

    Args:
        mask: ``(H, W, D)`` boolean mask of one lesion.
        spacing_mm: Voxel size along each array axis, in mm.
        axial_axis: The array axis closest to the patient's superior-inferior direction.
        axes_mm: Optional ``(3, 3)`` voxel-to-world matrix (the affine's 3x3): in-slice distances from its
            two in-slice columns (exact for a sheared slice; a gantry tilt leaves the slice itself square).

    Returns:
        :class:`RecistAxes`; ``(0, 0, -1)`` for an empty mask, one voxel width for a single voxel.
    """
    mask = np.moveaxis(np.asarray(mask, dtype=bool), axial_axis, 0)
    in_plane = [float(s) for a, s in enumerate(spacing_mm) if a != axial_axis]
    plane_axes = None if axes_mm is None else np.delete(np.asarray(axes_mm, dtype=float)[:3, :3], axial_axis, axis=1)
    best = RecistAxes(0.0, 0.0, -1)
    best_direction, best_points = None, None
    for k in np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)):
        points = boundary_points_mm(mask[k], spacing_mm=in_plane, axes_mm=plane_axes)
        length, direction = _farthest_pair(points)
        if length > best.long_axis_mm:
            best, best_direction, best_points = RecistAxes(length, 0.0, int(k)), direction, points
    if best_points is None:
        return best
    short = _short_axis_mm(best_points, best_direction, max(in_plane))
    return RecistAxes(best.long_axis_mm, short, best.slice_index)
