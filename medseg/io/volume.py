"""The :class:`Volume`: a CT array that never travels without its geometry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from medseg.geometry import voxel_volume_ml

__all__ = ["Volume", "affine_from_geometry"]


def affine_from_geometry(
    spacing_mm: tuple[float, ...] | np.ndarray,
    *,
    origin_mm: tuple[float, ...] | np.ndarray = (0.0, 0.0, 0.0),
    direction: np.ndarray | None = None,
) -> np.ndarray:
    """Build a 4x4 voxel-to-world affine (RAS+, mm) from spacing, origin and direction cosines.

    Args:
        spacing_mm: Voxel size along array axes 0, 1, 2, in mm.
        origin_mm: World position of voxel (0, 0, 0), RAS+ mm.
        direction: 3x3 matrix whose column ``i`` is the unit world direction of array axis ``i``
            (identity when ``None``).
    """
    direction = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(spacing_mm, dtype=float)[None, :]
    affine[:3, 3] = np.asarray(origin_mm, dtype=float)
    return affine


@dataclass(frozen=True)
class Volume:
    """A 3D image or label map with its voxel-to-world geometry.

    The array is indexed ``[i, j, k]`` in the file's voxel order (nibabel's convention, not SimpleITK's
    ``[k, j, i]``); ``affine`` maps ``(i, j, k, 1)`` to RAS+ world coordinates in mm, so
    ``spacing_mm[a]`` belongs to array axis ``a``. DICOM (LPS) geometry is converted to RAS on reading.

    Attributes:
        array: ``(X, Y, Z)`` voxel data (int16 HU for CT, uint8 labels, float after preprocessing).
        affine: ``(4, 4)`` voxel-to-world matrix, RAS+ mm.
        meta: Source information (``path``, ``format``, ``modality``, ``series_uid``, ...).
    """

    array: np.ndarray
    affine: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        affine = np.asarray(self.affine, dtype=float)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {affine.shape}")
        if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise ValueError(f"affine must be finite and invertible, got\n{affine}")
        object.__setattr__(self, "affine", affine)
        object.__setattr__(self, "meta", dict(self.meta))

    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape."""
        return tuple(self.array.shape)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along each array axis, in mm (column norms of the affine)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def origin_mm(self) -> tuple[float, float, float]:
        """RAS+ world position of voxel ``(0, 0, 0)`` in mm."""
        return tuple(float(v) for v in self.affine[:3, 3])

    @property
    def direction(self) -> np.ndarray:
        """``(3, 3)`` direction cosines; column ``a`` is the world direction of array axis ``a``."""
        return self.affine[:3, :3] / np.asarray(self.spacing_mm)[None, :]

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL: ``|det|`` of the affine's 3x3 (:func:`medseg.geometry.voxel_volume_ml`),
        exact for tilted and sheared grids too."""
        return voxel_volume_ml(self.spacing_mm, affine=self.affine)

    def with_array(self, array: np.ndarray, **meta: Any) -> Volume:
        """A new Volume with the same geometry and ``array`` (same shape), meta updated by ``meta``."""
        if tuple(array.shape[-3:]) != self.shape[-3:]:
            raise ValueError(f"array shape {array.shape} does not match volume shape {self.shape}")
        return replace(self, array=array, meta={**self.meta, **meta})

    def same_geometry(self, other: Volume, *, atol_mm: float = 1e-3) -> bool:
        """Whether ``other`` has the same shape and affine (to ``atol_mm``)."""
        return self.shape == other.shape and bool(np.allclose(self.affine, other.affine, atol=atol_mm))

    def world_coordinates(self, index: np.ndarray) -> np.ndarray:
        """Map voxel indices ``(N, 3)`` (may be fractional) to RAS+ world coordinates in mm."""
        index = np.atleast_2d(np.asarray(index, dtype=float))
        return index @ self.affine[:3, :3].T + self.affine[:3, 3]
