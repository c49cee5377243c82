"""Resampling against analytic answers: linear ramps stay ramps, sphere volumes are kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.io import affine_from_geometry
from medseg.preprocessing.resample import grid_affine, resample_array, resampled_shape


def _ramp(shape, spacing, direction=None, weights=(0.7, -1.3, 2.1), offset=5.0):
    """A linear function of world position sampled at the voxel centres of a grid."""
    affine = affine_from_geometry(spacing, origin_mm=(-12.0, 3.0, 40.0), direction=direction)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    world = idx @ affine[:3, :3].T + affine[:3, 3]
    return (world @ np.asarray(weights) + offset).reshape(shape), affine


@pytest.mark.parametrize(("in_shape", "out_shape"), [((20, 16, 12), (30, 8, 12)), ((9, 9, 9), (17, 5, 23))])
def test_linear_ramp_stays_linear_at_new_voxel_centres(in_shape, out_shape):
    values, affine = _ramp(in_shape, (1.5, 0.8, 3.0))
    out = resample_array(values.astype(np.float64)[None], out_shape=out_shape)
    assert out.shape == (1, *out_shape) and out.dtype == np.float64
    new_affine = grid_affine(affine, in_shape, out_shape)
    # expected: the same linear function at the new voxel centres, which lie inside the old centres' hull
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in out_shape], indexing="ij"), axis=-1)
    old_index = (idx + 0.5) * np.asarray(in_shape) / np.asarray(out_shape) - 0.5
    inside = np.all((old_index >= 0) & (old_index <= np.asarray(in_shape) - 1), axis=-1)
    world = idx.reshape(-1, 3) @ new_affine[:3, :3].T + new_affine[:3, 3]
    expected = (world @ np.asarray((0.7, -1.3, 2.1)) + 5.0).reshape(out_shape)
    np.testing.assert_allclose(out[0][inside], expected[inside], atol=1e-9)
    assert inside.mean() > 0.5
    # outside the hull the border value is repeated: the ramp clamped to the old index range
    clamped = np.clip(old_index, 0, np.asarray(in_shape) - 1).reshape(-1, 3)
    world_c = clamped @ affine[:3, :3].T + affine[:3, 3]
    np.testing.assert_allclose(out[0], (world_c @ np.asarray((0.7, -1.3, 2.1)) + 5.0).reshape(out_shape), atol=1e-9)


def test_grid_affine_keeps_field_of_view():
    affine = affine_from_geometry((0.7, 0.7, 2.5), origin_mm=(-100.0, -80.0, 10.0))
    new = grid_affine(affine, (100, 100, 40), (50, 70, 100))
    np.testing.assert_allclose(np.linalg.norm(new[:3, :3], axis=0), (1.4, 0.7 * 100 / 70, 1.0))
    # the outer faces of the first voxel coincide: centre minus half a voxel is the same world point
    np.testing.assert_allclose(new[:3, 3] - np.diag(new[:3, :3]) / 2, affine[:3, 3] - np.diag(affine[:3, :3]) / 2)


def test_sphere_label_volume_preserved():
    spacing, target, radius = (0.8, 0.8, 2.5), (1.5, 1.5, 1.5), 20.0
    shape = (80, 80, 28)
    centre = (np.asarray(shape) - 1) / 2 * np.asarray(spacing)
    grid = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    sphere = (sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2).astype(np.uint8)
    out_shape = resampled_shape(shape, spacing_mm=spacing, target_spacing_mm=target)
    assert out_shape == (43, 43, 47)
    out = resample_array(sphere, out_shape=out_shape, mode="nearest")
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1}
    new_spacing = np.asarray(shape) * np.asarray(spacing) / np.asarray(out_shape)
    volume = out.sum() * np.prod(new_spacing)
    assert volume == pytest.approx(4 / 3 * np.pi * radius**3, rel=0.03)


def test_torch_input_and_identity():
    x = torch.arange(2 * 4 * 5 * 6, dtype=torch.float32).reshape(2, 4, 5, 6)
    same = resample_array(x, out_shape=(4, 5, 6))
    assert isinstance(same, torch.Tensor) and torch.equal(same, x) and same.data_ptr() != x.data_ptr()
    # 2x up-sampling then 2x down-sampling (nearest) returns the original exactly
    up = resample_array(x, out_shape=(8, 10, 12), mode="nearest")
    assert torch.equal(resample_array(up, out_shape=(4, 5, 6), mode="nearest"), x)


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        resample_array(np.zeros((2, 2, 2)), out_shape=(3, 3, 3), mode="cubic")
    with pytest.raises(ValueError, match="out_shape"):
        resample_array(np.zeros((2, 2, 2)), out_shape=(3, 3))
    with pytest.raises(ValueError, match="array"):
        resample_array(np.zeros((2, 2)), out_shape=(3, 3, 3))
