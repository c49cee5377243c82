"""Geometry rules: spacing checks, voxel volume, bounding boxes (hand-computed values)."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.geometry import bounding_box, check_spacing, grow_box, voxel_volume_ml


def test_check_spacing_returns_floats():
    spacing = check_spacing((0.7, 0.8, 2), 3)
    assert spacing.dtype == np.float64 and spacing.tolist() == [0.7, 0.8, 2.0]
    assert check_spacing([1, 2], (2, 3)).tolist() == [1.0, 2.0]


@pytest.mark.parametrize("bad", [(1.0, 1.0), (1.0, 0.0, 1.0), (1.0, -2.0, 1.0), (1.0, np.inf, 1.0),
                                 (1.0, np.nan, 1.0), ("a", "b", "c"), None])
def test_check_spacing_rejects(bad):
    with pytest.raises(ValueError, match=r"^voxel_mm must be 3 positive finite numbers \(one per array axis\)"):
        check_spacing(bad, 3, name="voxel_mm")


def test_check_spacing_names_the_allowed_counts():
    with pytest.raises(ValueError, match="must be 2 or 3 positive"):
        check_spacing((1.0,) * 4, (2, 3))


def test_voxel_volume_ml():
    assert voxel_volume_ml((0.5, 0.5, 2.0)) == 0.5 * 0.5 * 2.0 / 1000  # 0.5 mm^3 = 0.0005 mL
    assert voxel_volume_ml((10.0, 10.0, 10.0)) == 1.0  # one cubic centimetre
    assert voxel_volume_ml((2.0, 3.0)) == pytest.approx(0.006)  # 2D: pixel area / 1000


def test_volume_voxel_volume_uses_the_spacing():
    from medseg.io.volume import Volume

    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    affine[:3, :3] = affine[:3, :3] @ np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]])  # permuted, flipped axes
    volume = Volume(np.zeros((2, 2, 2), np.int16), affine)
    assert volume.voxel_volume_ml == pytest.approx(0.8 * 0.8 * 2.5 / 1000)


def test_bounding_box_hand_computed():
    mask = np.zeros((6, 7, 8), dtype=bool)
    mask[1, 2, 3] = True
    mask[4, 5, 6] = True
    assert bounding_box(mask) == (slice(1, 5), slice(2, 6), slice(3, 7))
    assert bounding_box(np.zeros((3, 3, 3), bool)) is None
    assert bounding_box(np.zeros((0, 3), bool)) is None
    labels = np.zeros((5, 5), np.uint8)
    labels[0, 4] = 2  # integers: non-zero is foreground
    assert bounding_box(labels) == (slice(0, 1), slice(4, 5))
    assert bounding_box(np.array([0, 1, 1, 0, 1, 0], bool)) == (slice(1, 5),)


@pytest.mark.parametrize("layout", ["C", "F", "strided", "transposed"])
def test_bounding_box_any_memory_order(layout):
    """Same box in every memory layout, equal to one built from np.nonzero."""
    rng = np.random.default_rng(3)
    for _ in range(30):
        shape = tuple(int(n) for n in rng.integers(1, 9, size=3))
        mask = rng.random(shape) < 0.04
        arr = {"C": mask, "F": np.asfortranarray(mask), "strided": np.repeat(mask, 2, axis=1)[:, ::2],
               "transposed": mask.T.copy().T}[layout]
        idx = np.nonzero(mask)
        expected = None if idx[0].size == 0 else tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)
        assert bounding_box(arr) == expected


def test_bounding_box_does_not_copy_a_fortran_volume():
    """A Fortran-ordered volume (as nibabel returns) is reduced through views: peak extra memory stays far
    below the volume's size."""
    import tracemalloc

    mask = np.zeros((256, 256, 160), dtype=bool, order="F")  # 10.5 MB
    mask[40:90, 100:200, 10:20] = True
    tracemalloc.start()
    box = bounding_box(mask)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert box == (slice(40, 90), slice(100, 200), slice(10, 20))
    assert peak < mask.nbytes / 10


def test_grow_box_clamps():
    box = (slice(1, 3), slice(0, 5))
    assert grow_box(box, 2, (4, 6)) == (slice(0, 4), slice(0, 6))
    assert grow_box(box, (0, 1), (10, 10)) == (slice(1, 3), slice(0, 6))
    with pytest.raises(ValueError, match="one entry per axis"):
        grow_box(box, (1, 1, 1), (4, 6))


def test_touches_border():
    from medseg.geometry import touches_border

    mask = np.zeros((5, 6, 7), dtype=bool)
    assert not touches_border(mask)
    mask[2, 3, 3] = True
    assert not touches_border(mask) and not touches_border(np.asfortranarray(mask))
    for index in [(0, 3, 3), (4, 3, 3), (2, 0, 3), (2, 5, 3), (2, 3, 0), (2, 3, 6)]:
        edge = np.zeros_like(mask)
        edge[index] = True
        assert touches_border(edge) and touches_border(np.asfortranarray(edge)), index


def test_voxel_volume_of_a_tilted_and_a_sheared_affine_is_the_determinant():
    """Issue #29.3: a 25° gantry tilt (slice step 2.5 mm along a tilted axis) and a 30° sheared sform; the
    analytic volume of the parallelepiped is the in-plane area times the step's component normal to it."""
    from medseg.geometry import axis_skew_deg, voxel_volume_ml

    tilt = np.radians(25.0)
    tilted = np.eye(4)
    tilted[:3, :3] = [[0.7, 0, 0], [0, 0.7, 2.5 * np.sin(tilt)], [0, 0, 2.5 * np.cos(tilt)]]
    assert voxel_volume_ml((0.7, 0.7, 2.5), affine=tilted) == pytest.approx(0.7 * 0.7 * 2.5 * np.cos(tilt) / 1000)
    assert voxel_volume_ml((0.7, 0.7, 2.5)) / voxel_volume_ml((0.7, 0.7, 2.5), affine=tilted) == pytest.approx(
        1.1034, abs=1e-4)  # the +10.3% of the issue
    assert axis_skew_deg(tilted) == pytest.approx(25.0)
    shear = np.radians(30.0)
    sheared = np.diag([1.0, 1.0, 1.0, 1.0])
    sheared[0, 1] = np.tan(shear)  # y axis leans 30° towards x: column norms 1, 1/cos(30°), 1
    assert voxel_volume_ml((1.0, 1 / np.cos(shear), 1.0), affine=sheared) == pytest.approx(1e-3)
    assert axis_skew_deg(sheared) == pytest.approx(30.0)
    assert axis_skew_deg(np.diag([0.7, 0.8, 5.0, 1.0])) == 0.0
