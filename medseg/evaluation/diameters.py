"""Lesion diameters in mm: maximal 3D diameter and longest axial (in-slice) diameter.

A diameter is the largest distance between two points of the segmented object's boundary, taken as the
centres of the voxel faces that separate the object from the background. These are exactly the vertices
of the marching-cubes (3D) or marching-squares (2D) surface at level 0.5, which PyRadiomics uses for its
``Maximum3DDiameter`` and ``Maximum2DDiameterSlice`` (van Griethuysen et al., Cancer Research 2017), so
values are comparable with radiomics tables; a single voxel measures one voxel width along its longest
axis. The farthest pair of points lies on their convex hull (``scipy.spatial.ConvexHull``), so only hull
vertices are compared. Voxel axes are assumed orthogonal (true for CT); spacing comes from the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

__all__ = ["axial_diameter_mm", "boundary_points_mm", "max_diameter_mm"]


def boundary_points_mm(mask: np.ndarray, *, spacing_mm: Sequence[float]) -> np.ndarray:
    """Centres (mm, relative to voxel ``(0, ..., 0)``) of all faces between ``mask`` and its background.

    Args:
        mask: ``(H, W[, D])`` boolean mask; the array border counts as background.
        spacing_mm: Voxel size along each axis, in mm.

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
    return np.unique(np.concatenate(points), axis=0) * spacing


def _diameter(points: np.ndarray) -> float:
    """Largest pairwise distance among ``points`` (``(N, d)``), via the convex hull when it pays."""
    if len(points) < 2:
        return 0.0
    if len(points) > 64:
        try:
            points = points[ConvexHull(points).vertices]
        except QhullError:  # flat or collinear set: joggle to get a hull; vertices are still input points
            points = points[ConvexHull(points, qhull_options="QJ").vertices]
    return float(pdist(points).max())


def max_diameter_mm(mask: np.ndarray, *, spacing_mm: Sequence[float]) -> float:
    """Maximal diameter (mm) of the object in ``mask`` (``(H, W[, D])``); 0 for an empty mask."""
    return _diameter(boundary_points_mm(mask, spacing_mm=spacing_mm))


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
