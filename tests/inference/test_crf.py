"""Dense CRF: its filtered sums and mean-field against a brute-force computation over every pair of voxels,
and a boundary moved towards the intensity edge."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import ConfigError
from medseg.inference.crf import (
    CrfSettings,
    _BilateralGrid,
    _smoothness_sums,
    dense_crf,
    pairwise_sums_bruteforce,
    refine_labels,
)
from medseg.inference.postprocess import PostprocessConfig

SPACING = (1.5, 1.5, 2.5)


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    shape = (10, 9, 8)
    image = np.where(np.indices(shape)[0] < 5, 60.0, -20.0) + rng.normal(0, 5, shape)
    q = rng.dirichlet([1, 1, 1], size=shape).transpose(3, 0, 1, 2).astype(np.float32)
    return image, q


def test_smoothness_sums_equal_the_sum_over_every_pair(tiny):
    image, q = tiny
    exact = pairwise_sums_bruteforce(q, image, spacing_mm=SPACING, theta_mm=3.0, theta_hu=None)
    np.testing.assert_allclose(_smoothness_sums(q, SPACING, 3.0), exact, rtol=1e-4, atol=1e-4 * exact.max())


def test_bilateral_grid_sums_within_two_percent_of_the_sum_over_every_pair(tiny):
    image, q = tiny
    exact = pairwise_sums_bruteforce(q, image, spacing_mm=SPACING, theta_mm=6.0, theta_hu=15.0)
    grid = _BilateralGrid(image.astype(np.float32), SPACING, 6.0, 15.0).sums(q)
    error = np.abs(grid - exact)
    assert error.mean() / np.abs(exact).mean() < 0.01 and error.max() / np.abs(exact).max() < 0.03


def _mean_field_bruteforce(p, image, settings):
    """Krähenbühl & Koltun's Algorithm 1 with every pairwise sum written out (Potts compatibility)."""
    unary = -np.log(np.clip(p, 1e-6, 1.0))
    q = np.exp(-unary) / np.exp(-unary).sum(0)
    for _ in range(settings.iterations):
        m = settings.smoothness_weight * pairwise_sums_bruteforce(q, image, spacing_mm=SPACING,
                                                                  theta_mm=settings.smoothness_mm, theta_hu=None)
        clipped = np.clip(image, *settings.hu_range)
        m += settings.appearance_weight * pairwise_sums_bruteforce(q, clipped, spacing_mm=SPACING,
                                                                   theta_mm=settings.appearance_mm,
                                                                   theta_hu=settings.appearance_hu)
        energy = -unary - (m.sum(0) - m)
        q = np.exp(energy - energy.max(0)) / np.exp(energy - energy.max(0)).sum(0)
    return q


@pytest.mark.parametrize(("weight", "max_diff", "mean_diff"), [(0.1, 0.03, 0.003), (1.0, 0.5, 0.005)])
def test_mean_field_matches_the_brute_force_computation(tiny, weight, max_diff, mean_diff):
    """Weak pairwise terms keep Q soft: close everywhere (measured 0.015 max); strong ones saturate it, where a
    voxel near a tie may flip (measured 0.27 max at one voxel), but on average equal and the same argmax."""
    image, q = tiny
    settings = CrfSettings(iterations=3, appearance_mm=4.0, appearance_hu=20.0, smoothness_mm=2.0,
                           smoothness_weight=weight, appearance_weight=weight)  # fmt: skip
    exact = _mean_field_bruteforce(q.astype(np.float64), image, settings)
    ours = dense_crf(q, image, spacing_mm=SPACING, settings=settings)
    assert np.abs(ours - exact).max() < max_diff and np.abs(ours - exact).mean() < mean_diff
    assert (ours.argmax(0) == exact.argmax(0)).mean() > 0.99
    assert np.abs(ours - q).mean() > 0.1  # the CRF did something


@pytest.mark.parametrize("classes", [1, 2, 4])
def test_mean_field_with_other_class_counts(tiny, classes):
    """The last class's message comes from the filtered ones minus the others': right for any ``K``
    (one class: Q is 1)."""
    image, _ = tiny
    q = np.random.default_rng(classes).dirichlet([1] * classes, size=image.shape).transpose(3, 0, 1, 2)
    settings = CrfSettings(iterations=3, appearance_mm=4.0, appearance_hu=20.0, smoothness_mm=2.0,
                           smoothness_weight=0.1, appearance_weight=0.1)  # fmt: skip
    exact = _mean_field_bruteforce(q, image, settings)
    ours = dense_crf(q.astype(np.float32), image, spacing_mm=SPACING, settings=settings)
    assert ours.shape == q.shape and np.abs(ours - exact).max() < 0.03 and np.abs(ours - exact).mean() < 0.003


def test_the_crf_moves_a_blurred_boundary_to_the_intensity_edge():
    """Liver (60 HU) for x < 12, fat (-90 HU) beyond; the network's liver probability falls off late and
    softly (a sigmoid centred at x = 15): the refined boundary moves towards the edge at x = 12."""
    shape = (32, 16, 8)
    x = np.indices(shape)[0].astype(np.float32)
    image = np.where(x < 12, 60.0, -90.0) + np.random.default_rng(1).normal(0, 4, shape)
    liver = 1.0 / (1.0 + np.exp((x - 15.0) / 2.0))
    p = np.stack([1.0 - liver, liver * 0.98, liver * 0.02]).astype(np.float32)
    before = int((p.argmax(0) == 1)[:, 8, 4].sum())  # liver voxels along one row: the boundary position
    labels = refine_labels(p.argmax(0).astype(np.uint8), p, image, spacing_mm=(1.0, 1.0, 2.0),
                           settings=CrfSettings(appearance_weight=5.0))
    after = int((labels == 1)[:, 8, 4].sum())
    assert before == 15 and abs(after - 12) < abs(before - 12)
    assert np.array_equal(labels[x >= 28], np.zeros_like(labels[x >= 28]))  # far from the liver: unchanged


def test_settings_and_the_postprocessing_key():
    with pytest.raises(ConfigError, match=r"crf\.iterations"):
        CrfSettings(iterations=0)
    with pytest.raises(ConfigError, match=r"crf\.hu_range"):
        CrfSettings(hu_range=(100.0, -100.0))
    config = PostprocessConfig.from_dict({"crf": {"iterations": 3}})
    assert config.crf == CrfSettings(iterations=3)
    assert PostprocessConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match=r"unknown postprocessing\.crf key"):
        PostprocessConfig.from_dict({"crf": {"steps": 3}})
    assert PostprocessConfig().crf is None  # off unless asked


def _grid_operator(grid, image):
    """The grid's linear map written out: splat ``S`` (each voxel's multilinear weights on the 16 corners of its
    4D cell, ``(cells, N)``), blur ``G`` (the 4D Gaussian, column by column), slice ``S^T``: ``S^T G S``."""
    from scipy import ndimage

    positions = np.indices(image.shape).reshape(3, -1).astype(np.float64)
    hu = (image.ravel().astype(np.float32) - grid.hu_min).astype(np.float64)
    coords = np.concatenate([positions, hu[None]]) * np.array(grid.cells_per_unit, np.float64)[:, None]
    base, n = np.floor(coords).astype(int), coords.shape[1]
    splat = np.zeros((int(np.prod(grid.grid_shape)), n))
    for corner in range(16):
        bits = np.array([(corner >> a) & 1 for a in range(4)])[:, None]
        weight = np.prod(np.where(bits == 1, coords - base, 1 - (coords - base)), axis=0)
        np.add.at(splat, (np.ravel_multi_index(tuple(base + bits), grid.grid_shape), np.arange(n)), weight)
    blurred = ndimage.gaussian_filter(splat.reshape(*grid.grid_shape, n), sigma=(grid.sigma,) * 4 + (0,),
                                      mode="constant", truncate=4.0).reshape(splat.shape)  # fmt: skip
    return splat.T @ blurred


def test_the_slice_by_slice_grid_equals_the_4d_splat_blur_slice():
    """The grid's x-slice-by-x-slice splat (8 scattered corners, 2 x-planes) and slicing equal the textbook 4D
    multilinear splat / blur / slice operator built as matrices, its diagonal (a voxel's own term) removed."""
    rng = np.random.default_rng(3)
    shape = (7, 5, 4)
    image = np.where(np.indices(shape)[1] < 2, 60.0, -20.0) + rng.normal(0, 8, shape)
    q = rng.dirichlet([1, 1, 1], size=shape).transpose(3, 0, 1, 2).astype(np.float32)
    grid = _BilateralGrid(image.astype(np.float32), SPACING, 4.0, 20.0)
    operator = _grid_operator(grid, image)
    np.fill_diagonal(operator, 0.0)
    expected = (q.reshape(3, -1).astype(np.float64) @ operator.T).reshape(q.shape) * grid.scale
    np.testing.assert_allclose(grid.sums(q), expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
