"""Canonical reorientation and its exact inverse."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from medseg.errors import DataError
from medseg.io import (
    Volume,
    affine_from_geometry,
    align_to,
    axcodes,
    from_canonical,
    place_on_grid,
    to_canonical,
)


def _all_orientations():
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            direction = np.zeros((3, 3))
            for axis, (world, sign) in enumerate(zip(perm, signs)):
                direction[world, axis] = sign
            yield direction


@pytest.mark.parametrize("direction", list(_all_orientations()))
def test_to_canonical_is_ras_keeps_world_and_inverts_exactly(direction):
    rng = np.random.default_rng(0)
    array = rng.integers(-1000, 1000, size=(5, 6, 7)).astype(np.int16)
    vol = Volume(array, affine_from_geometry((0.7, 0.9, 2.5), origin_mm=(3, -4, 5), direction=direction))
    canon, recipe = to_canonical(vol)
    assert axcodes(canon.affine) == ("R", "A", "S")
    # every voxel keeps its world position: compare via world coordinates of a few voxels
    for index in [(0, 0, 0), (4, 5, 6), (2, 3, 1)]:
        world = vol.world_coordinates([index])
        canon_index = np.rint(np.linalg.solve(canon.affine, np.append(world[0], 1.0))[:3]).astype(int)
        assert canon.array[tuple(canon_index)] == array[index]
    np.testing.assert_array_equal(from_canonical(canon.array, recipe), array)
    # leading channel axes are carried through the inverse
    stacked = np.stack([canon.array, canon.array + 1])
    back = from_canonical(stacked, recipe)
    np.testing.assert_array_equal(back[1], array + 1)


# --------------------------------------------------------------------------------------------------
# the same world grid in another voxel order


def _stored_as(volume: Volume, codes: str) -> Volume:
    """``volume`` stored in the voxel order ``codes`` (same world grid), computed with nibabel directly."""
    import nibabel.orientations as nio

    transform = nio.ornt_transform(nio.io_orientation(volume.affine), nio.axcodes2ornt(tuple(codes)))
    array = nio.apply_orientation(volume.array, transform)
    return Volume(np.ascontiguousarray(array), volume.affine @ nio.inv_ornt_aff(transform, volume.shape),
                  {"path": f"label_{codes}.nii.gz"})


@pytest.fixture
def lpi_scan():
    rng = np.random.default_rng(1)
    array = rng.integers(-1000, 1000, size=(6, 7, 5)).astype(np.int16)
    affine = affine_from_geometry((0.75, 0.8, 2.5), origin_mm=(120.0, 95.0, 40.0), direction=np.diag([-1, -1, -1]))
    return Volume(array, affine, {"path": "series/"})


@pytest.mark.parametrize("codes", ["LAS", "RAS", "SPL", "AIR", "LPI"])
def test_align_to_reorients_the_same_grid_exactly(lpi_scan, codes):
    assert "".join(axcodes(lpi_scan.affine)) == "LPI"
    stored = _stored_as(lpi_scan, codes)
    assert "".join(axcodes(stored.affine)) == codes
    aligned = align_to(stored, lpi_scan)
    np.testing.assert_array_equal(aligned.array, lpi_scan.array)
    np.testing.assert_allclose(aligned.affine, lpi_scan.affine)
    assert align_to(stored, lpi_scan, required=False) is not None


def test_align_to_tolerates_rounding_but_not_a_shift(lpi_scan):
    stored = _stored_as(lpi_scan, "LAS")
    nudged = Volume(stored.array, stored.affine + np.pad(np.full((3, 1), 0.01), ((0, 1), (3, 0))), stored.meta)
    np.testing.assert_array_equal(align_to(nudged, lpi_scan).array, lpi_scan.array)
    shifted = stored.affine.copy()
    shifted[:3, 3] += (0.0, 0.0, 2.5)  # one slice off
    with pytest.raises(DataError) as info:
        align_to(Volume(stored.array, shifted, stored.meta), lpi_scan)
    message = str(info.value)
    assert message.startswith("label_LAS.nii.gz: label map grid (shape 6x7x5, spacing 0.75x0.8x2.5 mm, orientation "
                              "LAS, origin (")
    assert "is not the grid of the image series/ (shape 6x7x5, spacing 0.75x0.8x2.5 mm, orientation LPI, origin " \
           "(120.00, 95.00, 40.00) mm)" in message
    assert "np." not in message and "\n" not in message


def test_align_to_refuses_other_shape_and_spacing(lpi_scan):
    other = Volume(lpi_scan.array[:, :, :4], lpi_scan.affine, {"path": "a.nii"})
    with pytest.raises(DataError, match="shape 6x7x4"):
        align_to(other, lpi_scan)
    finer = Volume(lpi_scan.array, lpi_scan.affine @ np.diag([1, 1, 0.5, 1]), {"path": "b.nii"})
    with pytest.raises(DataError, match=r"spacing 0\.75x0\.8x1\.25 mm"):
        align_to(finer, lpi_scan)


def test_place_on_grid_pastes_a_sub_box(lpi_scan):
    box = lpi_scan.array[1:4, 2:7, 3:5]
    offset = lpi_scan.affine @ np.array([1, 2, 3, 1.0])
    sub = Volume(box, np.column_stack([lpi_scan.affine[:, :3], offset]), {"path": "seg.dcm"})
    sub = _stored_as(sub, "RAS")
    placed = place_on_grid(sub, lpi_scan, fill=-5)
    expected = np.full(lpi_scan.shape, -5, np.int16)
    expected[1:4, 2:7, 3:5] = box
    np.testing.assert_array_equal(placed.array, expected)
    half = Volume(box, np.column_stack([lpi_scan.affine[:, :3], offset + np.array([0.4, 0, 0, 0])]), {})
    assert place_on_grid(half, lpi_scan) is None  # not on a voxel of the grid


def test_align_to_not_required_gives_none_for_another_grid(lpi_scan):
    other = Volume(lpi_scan.array[:, :, :4], lpi_scan.affine, {"path": "a.nii"})
    assert align_to(other, lpi_scan, required=False) is None
    assert align_to(lpi_scan, lpi_scan, required=False) is lpi_scan  # the same grid and order: unchanged


@pytest.mark.parametrize("direction", list(_all_orientations()))
def test_canonical_box_is_the_same_voxels_and_inverts_back(direction):
    """A box of the source's voxels is the same voxels in canonical order, and ``from_canonical(box=...)``
    brings that crop back to the source's crop (checked against cropping the canonical array by hand)."""
    from medseg.io.orientation import canonical_box

    array = np.arange(5 * 6 * 7, dtype=np.int32).reshape(5, 6, 7)
    vol = Volume(array, affine_from_geometry((0.7, 0.9, 2.5), direction=direction))
    canon, recipe = to_canonical(vol)
    box = (slice(1, 4), slice(0, 2), slice(2, 7))
    crop = canon.array[canonical_box(box, recipe)]
    assert sorted(crop.ravel().tolist()) == sorted(array[box].ravel().tolist())
    np.testing.assert_array_equal(from_canonical(crop, recipe, box=box), array[box])
    np.testing.assert_array_equal(from_canonical(np.stack([crop, -crop]), recipe, box=box)[1], -array[box])
    with pytest.raises(ValueError, match="does not invert"):
        from_canonical(crop, recipe)
