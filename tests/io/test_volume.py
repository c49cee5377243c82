"""Volume: geometry from the affine, same-grid checks, arrays replaced with the geometry kept."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.io import Volume, affine_from_geometry


def test_geometry_properties_from_affine():
    direction = np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    affine = affine_from_geometry((0.7, 0.8, 2.5), origin_mm=(10.0, -5.0, 3.0), direction=direction)
    vol = Volume(np.zeros((4, 5, 6), np.int16), affine)
    assert vol.spacing_mm == pytest.approx((0.7, 0.8, 2.5))
    assert vol.origin_mm == pytest.approx((10.0, -5.0, 3.0))
    np.testing.assert_allclose(vol.direction, direction)
    assert vol.voxel_volume_ml == pytest.approx(0.7 * 0.8 * 2.5 / 1000)
    # voxel (1, 2, 3) -> origin + 1*0.7*d0 + 2*0.8*d1 + 3*2.5*d2
    expected = np.array([10.0, -5.0, 3.0]) + 0.7 * direction[:, 0] + 1.6 * direction[:, 1] + 7.5 * direction[:, 2]
    np.testing.assert_allclose(vol.world_coordinates([[1, 2, 3]])[0], expected)


def test_volume_rejects_singular_affine():
    with pytest.raises(ValueError, match="invertible"):
        Volume(np.zeros((2, 2, 2)), np.zeros((4, 4)))


def test_with_array_keeps_the_geometry_and_checks_the_shape():
    vol = Volume(np.zeros((2, 3, 4), np.int16), np.diag([1.0, 2.0, 3.0, 1.0]), {"path": "a.nii"})
    labels = vol.with_array(np.ones((2, 3, 4), np.uint8), kind="label")
    assert labels.meta == {"path": "a.nii", "kind": "label"} and vol.meta == {"path": "a.nii"}
    np.testing.assert_array_equal(labels.affine, vol.affine)
    probabilities = vol.with_array(np.zeros((3, 2, 3, 4), np.float32))  # leading channel axis allowed
    assert probabilities.array.shape == (3, 2, 3, 4)
    with pytest.raises(ValueError, match=r"array shape \(2, 3, 5\) does not match volume shape \(2, 3, 4\)"):
        vol.with_array(np.zeros((2, 3, 5)))


def test_same_geometry_tolerance():
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    vol = Volume(np.zeros((2, 2, 2)), affine)
    moved = affine.copy()
    moved[2, 3] = 5e-4  # half a micrometre: the same grid
    assert vol.same_geometry(Volume(np.zeros((2, 2, 2)), moved))
    moved[2, 3] = 0.01
    assert not vol.same_geometry(Volume(np.zeros((2, 2, 2)), moved))
    assert vol.same_geometry(Volume(np.zeros((2, 2, 2)), moved), atol_mm=0.02)
    assert not vol.same_geometry(Volume(np.zeros((2, 2, 3)), affine))
