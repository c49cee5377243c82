"""Reorientation to one canonical axis order (RAS+) and its exact inverse.

LiTS scans are stored with flipped and permuted axes. Processing happens on a canonical array whose axes
run towards Right, Anterior and Superior (axial slices along the last axis); predictions are mapped back
with the exact inverse, a pure flip/transpose, so a label map overlays its scan voxel for voxel.
Built on nibabel's orientation utilities (``io_orientation``, ``apply_orientation``).

:func:`align_to` is the one rule for "do these two volumes line up": the same world grid stored in
another voxel order (a label map saved LAS for a series read L,P,I, or with permuted axes) is the same
grid and is flipped/transposed exactly onto the other's voxel order; only a real difference (shape,
spacing, direction or origin beyond ``atol_mm``) is an error, described with plain numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import nibabel.orientations as nio
import numpy as np

from medseg.errors import DataError
from medseg.io.volume import Volume

__all__ = ["CANONICAL_AXCODES", "GRID_TOLERANCE_MM", "Reorientation", "align_to", "axcodes", "canonical_box",
           "describe_geometry", "from_canonical", "to_canonical"]

CANONICAL_AXCODES = ("R", "A", "S")

#: Largest distance (mm) between corresponding corner voxels of two grids that still counts as "the same grid".
GRID_TOLERANCE_MM = 0.05


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


def canonical_box(box: Sequence[slice], recipe: Reorientation) -> tuple[slice, slice, slice]:
    """The canonical-order voxels of ``box`` (three ``slice(start, stop)`` of the source's voxel order)."""
    canonical = [slice(0, 0)] * 3
    for axis, (target, flip) in enumerate(recipe.transform):
        n = recipe.source_shape[axis]
        start, stop, _ = box[axis].indices(n)
        canonical[int(target)] = slice(n - stop, n - start) if flip < 0 else slice(start, stop)
    return tuple(canonical)


def from_canonical(array: np.ndarray, recipe: Reorientation, *, box: Sequence[slice] | None = None) -> np.ndarray:
    """Map a canonical-order array back to the source voxel order.

    Args:
        array: ``(..., X, Y, Z)`` in canonical order; leading (channel) axes are kept.
        recipe: The :class:`Reorientation` returned by :func:`to_canonical`.
        box: ``array`` covers only this box of the source (``canonical_box(box, recipe)`` in canonical
            order); ``None``: the whole source.

    Returns:
        ``(..., X', Y', Z')`` in the source's voxel order (spatial shape ``recipe.source_shape``, or the box's).
    """
    inverse = nio.ornt_transform(nio.axcodes2ornt(CANONICAL_AXCODES), nio.io_orientation(recipe.source_affine))
    lead = array.ndim - 3
    moved = np.moveaxis(array, tuple(range(lead)), tuple(range(-lead, 0))) if lead else array
    out = nio.apply_orientation(moved, inverse)
    out = np.moveaxis(out, tuple(range(-lead, 0)), tuple(range(lead))) if lead else out
    expected = recipe.source_shape if box is None else tuple(
        len(range(*b.indices(n))) for b, n in zip(box, recipe.source_shape))
    if tuple(out.shape[-3:]) != tuple(expected):
        raise ValueError(f"array shape {array.shape} does not invert to source shape {tuple(expected)}")
    return np.ascontiguousarray(out)


def describe_geometry(volume: Volume) -> str:
    """Geometry as plain numbers: ``shape 48x48x20, spacing 0.98x0.98x5 mm, orientation LPS, origin (..) mm``."""
    shape = "x".join(str(n) for n in volume.shape)
    spacing = "x".join(f"{s:.4g}" for s in volume.spacing_mm)
    origin = ", ".join(f"{v:.2f}" for v in volume.origin_mm)
    return f"shape {shape}, spacing {spacing} mm, orientation {''.join(axcodes(volume.affine))}, origin ({origin}) mm"


def align_to(
    volume: Volume,
    reference: Volume,
    *,
    atol_mm: float = GRID_TOLERANCE_MM,
    what: str = "label map",
    reference_what: str = "image",
    required: bool = True,
) -> Volume | None:
    """``volume`` flipped/transposed onto ``reference``'s grid and voxel order.

    The two are the same grid when, after the exact flip/transpose that brings ``volume``'s axes onto
    ``reference``'s orientation, the shapes are equal and every corner voxel lies within ``atol_mm`` of
    the reference's (a distance in mm, so a direction error counts over the whole field of view).

    Args:
        volume: The volume to bring onto the reference grid (a label map, a prediction).
        reference: The volume whose grid and voxel order are kept.
        atol_mm: Corner-distance tolerance in mm.
        what: Name of ``volume`` in the error message. reference_what: name of ``reference``.
        required: Grids that differ are an error; ``False``: they give ``None`` (a question, not a demand).

    Raises:
        DataError: ``required`` and the grids differ: one line with both files and both geometries (shape,
            spacing, orientation, origin).
    """
    aligned = _reoriented(volume, reference, atol_mm)
    if aligned is not None or not required:
        return aligned
    mine, theirs = volume.meta.get("path", "?"), reference.meta.get("path", "?")
    raise DataError(f"{what} grid ({describe_geometry(volume)}) is not the grid of the {reference_what} {theirs} "
                    f"({describe_geometry(reference)}), not even in another voxel order; resample one onto the "
                    "other first", path=mine)


def _reoriented(volume: Volume, reference: Volume, atol_mm: float) -> Volume | None:
    """:func:`align_to`'s volume, or ``None`` if the grids differ."""
    transform = nio.ornt_transform(nio.io_orientation(volume.affine), nio.io_orientation(reference.affine))
    moved_shape = tuple(volume.shape[int(axis)] for axis in np.argsort(transform[:, 0]))
    if moved_shape != reference.shape:
        return None
    affine = volume.affine @ nio.inv_ornt_aff(transform, volume.shape)
    if _corner_distance_mm(affine, reference.affine, reference.shape) > atol_mm:
        return None
    if np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):
        return volume
    array = np.ascontiguousarray(nio.apply_orientation(np.asarray(volume.array), transform))
    meta = {**volume.meta, "nifti_qform": None, "nifti_qform_code": 0,
            "reoriented_from": "".join(axcodes(volume.affine))}
    return Volume(array=array, affine=reference.affine.copy(), meta=meta)


def _corner_distance_mm(affine: np.ndarray, reference_affine: np.ndarray, shape: tuple[int, ...]) -> float:
    """Largest world distance (mm) between the corner voxels of ``shape`` placed by the two affines."""
    ends = [(0, n - 1) for n in shape[:3]]
    corners = np.array([[i, j, k, 1.0] for i in ends[0] for j in ends[1] for k in ends[2]])
    return float(np.max(np.linalg.norm((corners @ affine.T - corners @ reference_affine.T)[:, :3], axis=1)))


def place_on_grid(volume: Volume, reference: Volume, *, atol_mm: float = GRID_TOLERANCE_MM, fill=0) -> Volume | None:
    """``volume`` pasted into ``reference``'s grid when it is a sub-box of it (any voxel order), else ``None``.

    A DICOM SEG usually stores only the frames that hold a segment; its voxels are voxels of the source
    series. Here each of ``volume``'s axes must run along one of ``reference``'s axes with the same step
    (within ``atol_mm`` over the box) and start on a reference voxel; voxels outside the box are ``fill``.
    """
    shape = np.asarray(reference.shape[:3])
    to_index = np.linalg.inv(reference.affine) @ volume.affine  # volume index -> reference index
    steps = np.rint(to_index[:3, :3])
    start = np.rint(to_index[:3, 3])
    permutation = np.abs(steps)
    if not (np.array_equal(np.sort(permutation, axis=0), [[0] * 3, [0] * 3, [1] * 3]) and
            np.array_equal(permutation.sum(axis=1), [1, 1, 1])):
        return None
    exact = np.eye(4)
    exact[:3, :3], exact[:3, 3] = steps, start
    if _corner_distance_mm(reference.affine @ exact, volume.affine, volume.shape) > atol_mm:
        return None
    corners = np.array([[i, j, k] for i in (0, volume.shape[0] - 1) for j in (0, volume.shape[1] - 1)
                        for k in (0, volume.shape[2] - 1)]) @ steps.T + start
    if corners.min() < 0 or np.any(corners.max(axis=0) > shape - 1):
        return None
    transform = np.array([[int(np.flatnonzero(steps[:, axis])[0]), int(steps[:, axis].sum())] for axis in range(3)])
    moved = nio.apply_orientation(np.asarray(volume.array), transform)
    lower = corners.min(axis=0).astype(int)
    out = np.full(tuple(shape), fill, dtype=moved.dtype)
    out[tuple(slice(a, a + n) for a, n in zip(lower, moved.shape))] = moved
    meta = {**volume.meta, "nifti_qform": None, "nifti_qform_code": 0, "placed_at_index": lower.tolist()}
    return Volume(array=out, affine=reference.affine.copy(), meta=meta)
