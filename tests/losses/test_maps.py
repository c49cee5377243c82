"""Per-sample maps: U-Net border weights and signed distances in mm, checked by hand and analytically."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medseg.errors import ConfigError
from medseg.losses import border_weight_map, boundary_distance_map, compute_maps, signed_distance_map


def _two_squares() -> np.ndarray:
    labels = np.zeros((20, 30), dtype=np.int64)
    labels[5:10, 5:10] = 1  # columns 5..9
    labels[5:10, 13:18] = 1  # columns 13..17: a gap of 3 pixels (columns 10..12)
    return labels


def _brute_force_weights(labels, w0, sigma, spacing, class_weights):
    """d1/d2 by explicit distances from every pixel to every pixel of every object."""
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(labels.shape, spacing)], indexing="ij"), -1)
    dists = []
    for cls in np.unique(labels[labels > 0]):
        comps, n = ndimage.label(labels == cls, structure=np.ones((3,) * labels.ndim))
        for k in range(1, n + 1):
            pts = grid[comps == k]
            d = np.linalg.norm(grid[..., None, :] - pts, axis=-1).min(-1)
            dists.append(d)
    dists = np.sort(np.stack(dists), axis=0)
    d1, d2 = dists[0], dists[1] if len(dists) > 1 else np.full(labels.shape, np.inf)
    return class_weights[labels] + np.where(labels == 0, w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2)), 0)


def test_border_weight_gap_gets_highest_weight():
    labels = _two_squares()
    w = border_weight_map(labels)
    n, n_fg = labels.size, 50
    w_bg, w_fg = n / (2 * (n - n_fg)), n / (2 * n_fg)
    # pixel (7, 11): middle of the gap, 2 px from each square
    assert w[7, 11] == pytest.approx(w_bg + 10 * np.exp(-((2 + 2) ** 2) / (2 * 5**2)), rel=1e-6)
    # a square pixel carries only its class weight
    assert w[7, 7] == pytest.approx(w_fg, rel=1e-6)
    # the highest background weight lies in the gap
    background = np.where(labels == 0, w, -np.inf)
    row, col = np.unravel_index(np.argmax(background), labels.shape)
    assert 10 <= col <= 12 and 5 <= row <= 9


def test_border_weight_matches_brute_force_2d():
    labels = _two_squares()
    labels[14:17, 22:26] = 2  # an object of another class
    weights = np.array([0.5, 1.0, 3.0])
    ours = border_weight_map(labels, w0=8.0, sigma=3.0, class_weights=weights)
    np.testing.assert_allclose(ours, _brute_force_weights(labels, 8.0, 3.0, (1.0, 1.0), weights), atol=1e-4)


def test_border_weight_in_mm_matches_brute_force_3d():
    labels = np.zeros((10, 12, 8), dtype=np.int64)
    labels[2:4, 2:5, 2:4] = 1
    labels[6:8, 7:10, 3:6] = 1
    labels[2:4, 9:11, 5:7] = 2
    spacing = (1.5, 0.8, 2.5)
    ours = border_weight_map(labels, sigma=4.0, spacing_mm=spacing, class_weights=None)
    expected = _brute_force_weights(labels, 10.0, 4.0, spacing, np.ones(3))
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_border_weight_single_object_has_no_border_term():
    labels = np.zeros((12, 12), dtype=np.int64)
    labels[3:6, 3:6] = 1
    np.testing.assert_allclose(border_weight_map(labels, class_weights=None), 1.0)


def test_signed_distance_on_anisotropic_sphere():
    spacing = np.array([0.7, 1.3, 2.5])
    shape = (72, 40, 22)
    center = np.array(shape) / 2 * spacing
    radius = 17.0
    coords = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij"), -1)
    exact = np.linalg.norm(coords - center, axis=-1) - radius  # analytic signed distance to the sphere
    labels = (exact <= 0).astype(np.int64)
    sdm = signed_distance_map(labels[None], num_classes=2, spacing_mm=tuple(spacing))
    assert sdm.shape == (2, *shape) and sdm.dtype == np.float32
    fg = sdm[1]
    diag = float(np.linalg.norm(spacing))
    inside, outside = labels == 1, labels == 0
    assert (fg[inside] < 0).all() and (fg[outside] > 0).all()
    # outside: distance to the nearest sphere voxel >= exact distance, and within one voxel diagonal of it
    err_out = fg[outside] - exact[outside]
    assert err_out.min() >= -1e-4 and err_out.max() <= diag
    # inside: distance to the nearest outside voxel >= exact depth, within one voxel diagonal
    err_in = -fg[inside] - (-exact[inside])
    assert err_in.min() >= -1e-4 and err_in.max() <= diag
    # on average within a fraction of a voxel; measuring in voxels (spacing ignored) would be far off
    assert np.abs(fg - exact).mean() < 0.5
    voxels = signed_distance_map(labels, num_classes=2, spacing_mm=(1.0, 1.0, 1.0))[1]
    assert np.abs(voxels - exact).mean() > 2.0
    # background channel is the mirror image
    np.testing.assert_allclose(sdm[0], -sdm[1])


def test_signed_distance_empty_and_full_classes_are_zero():
    labels = np.zeros((6, 7), dtype=np.int64)
    labels[1:3, 1:3] = 1
    sdm = signed_distance_map(labels, num_classes=3, spacing_mm=(1.0, 2.0))
    assert np.all(sdm[2] == 0) and np.isfinite(sdm).all()
    full = signed_distance_map(np.ones((4, 4), dtype=np.int64), num_classes=2, spacing_mm=(1.0, 1.0))
    assert np.all(full == 0)


def test_signed_distance_binary_channel_is_foreground():
    labels = np.zeros((9, 9), dtype=np.int64)
    labels[2:5, 2:5] = 1
    labels[6:8, 6:8] = 2
    one = signed_distance_map(labels, num_classes=1, spacing_mm=(1.0, 1.0))
    fg = labels > 0
    expected = ndimage.distance_transform_edt(~fg) - ndimage.distance_transform_edt(fg)
    np.testing.assert_allclose(one[0], expected, rtol=1e-6)


def test_compute_maps_shapes_and_consistency():
    labels = np.zeros((1, 10, 11, 6), dtype=np.int64)
    labels[0, 2:6, 3:8, 1:4] = 1
    labels[0, 3:4, 4:6, 2:3] = 2
    spacing = (0.8, 0.8, 2.0)
    maps = compute_maps(
        labels,
        ["weight_map", "distance_map", "target_distance"],
        num_classes=3,
        spacing_mm=spacing,
        options={"weight_map": {"w0": 4.0, "sigma_mm": 2.0}},
    )
    assert maps["weight_map"].shape == (1, 10, 11, 6)
    assert maps["distance_map"].shape == maps["target_distance"].shape == (3, 10, 11, 6)
    np.testing.assert_allclose(maps["target_distance"], np.abs(maps["distance_map"]))
    np.testing.assert_allclose(
        maps["target_distance"], boundary_distance_map(labels[0], num_classes=3, spacing_mm=spacing)
    )
    expected_w = border_weight_map(labels[0], w0=4.0, sigma=2.0, spacing_mm=spacing)
    np.testing.assert_allclose(maps["weight_map"][0], expected_w)


def test_compute_maps_rejects_unknown_names():
    with pytest.raises(ConfigError, match="weight_map"):
        compute_maps(np.zeros((1, 4, 4), dtype=np.int64), ["weights"], num_classes=2, spacing_mm=(1.0, 1.0))


def test_bad_spacing_is_named():
    with pytest.raises(ValueError, match="spacing_mm"):
        signed_distance_map(np.zeros((4, 4, 4), dtype=np.int64), num_classes=2, spacing_mm=(1.0, 1.0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inside_distance_crop_is_exact(seed):
    from medseg.losses.maps import inside_distance

    gen = np.random.default_rng(seed)
    mask = np.zeros((30, 25, 12), dtype=bool)
    for _ in range(3):  # blobs, some touching the volume's edge
        c = gen.integers(0, [30, 25, 12])
        r = gen.integers(2, 6, 3)
        mask[
            max(c[0] - r[0], 0) : c[0] + r[0], max(c[1] - r[1], 0) : c[1] + r[1], max(c[2] - r[2], 0) : c[2] + r[2]
        ] = True
    spacing = (0.7, 1.9, 3.0)
    np.testing.assert_array_equal(
        inside_distance(mask, spacing), ndimage.distance_transform_edt(mask, sampling=spacing)
    )
