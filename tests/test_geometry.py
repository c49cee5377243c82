"""Geometry rules: spacing checks, voxel volume (hand-computed values); boxes are in test_boxes.py."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.geometry import check_spacing, voxel_volume_ml


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
