"""Reorientation to one canonical axis order (RAS+) and its exact inverse.

LiTS scans are stored with flipped and permuted axes. Processing happens on a canonical array whose axes
run towards Right, Anterior and Superior (axial slices along the last axis); predictions are mapped back
with the exact inverse, a pure flip/transpose, so a label map overlays its scan voxel for voxel.
Built on nibabel's orientation utilities (``io_orientation``, ``apply_orientation``).
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel.orientations as nio
import numpy as np

from medseg.io.volume import Volume

__all__ = ["CANONICAL_AXCODES", "Reorientation", "axcodes", "from_canonical", "to_canonical"]

CANONICAL_AXCODES = ("R", "A", "S")


def axcodes(affine: np.ndarray) -> tuple[str, str, str]:
    """Orientation codes of an affine, e.g. ``('L', 'P', 'S')`` for a typical DICOM-derived NIfTI."""
    return tuple(nio.aff2axcodes(affine))


@dataclass(frozen=True)
class Reorientation:
    """What :func:`to_canonical` did, so :func:`from_canonical` can undo it exactly.

    Attributes:
        transform: nibabel orientation transform (``(3, 2)``: target axis, flip) from source to canonical.
        source_shape: Spatial shape of the source array.
        source_affine: ``(4, 4)`` affine of the source volume.
    """

    transform: np.ndarray
    source_shape: tuple[int, int, int]
    source_affine: np.ndarray

    @property
    def is_identity(self) -> bool:
        """Whether the source is already canonical."""
        return bool(np.array_equal(self.transform, [[0, 1], [1, 1], [2, 1]]))


def to_canonical(volume: Volume) -> tuple[Volume, Reorientation]:
    """Flip/transpose ``volume`` so its axes run R, A, S; returns the new volume and the inverse recipe.

    The world geometry is unchanged: the new affine maps the moved voxels to the same world points.
    """
    source = nio.io_orientation(volume.affine)
    target = nio.axcodes2ornt(CANONICAL_AXCODES)
    transform = nio.ornt_transform(source, target)
    array = nio.apply_orientation(volume.array, transform)
    affine = volume.affine @ nio.inv_ornt_aff(transform, volume.shape)
    meta = {**volume.meta, "nifti_qform": None, "nifti_qform_code": 0}
    recipe = Reorientation(transform=transform, source_shape=volume.shape, source_affine=volume.affine)
    return Volume(array=np.ascontiguousarray(array), affine=affine, meta=meta), recipe


def from_canonical(array: np.ndarray, recipe: Reorientation) -> np.ndarray:
    """Map a canonical-order array back to the source voxel order.

    Args:
        array: ``(..., X, Y, Z)`` in canonical order; leading (channel) axes are kept.
        recipe: The :class:`Reorientation` returned by :func:`to_canonical`.

    Returns:
        ``(..., X', Y', Z')`` in the source's voxel order (spatial shape ``recipe.source_shape``).
    """
    inverse = nio.ornt_transform(nio.axcodes2ornt(CANONICAL_AXCODES), nio.io_orientation(recipe.source_affine))
    lead = array.ndim - 3
    moved = np.moveaxis(array, tuple(range(lead)), tuple(range(-lead, 0))) if lead else array
    out = nio.apply_orientation(moved, inverse)
    out = np.moveaxis(out, tuple(range(-lead, 0)), tuple(range(lead))) if lead else out
    if tuple(out.shape[-3:]) != tuple(recipe.source_shape):
        raise ValueError(f"array shape {array.shape} does not invert to source shape {recipe.source_shape}")
    return np.ascontiguousarray(out)
