"""Patch positions and padded crops against numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.training.sampling import centered_start, crop_patch, foreground_count, pick_foreground_voxel, random_start


@pytest.mark.parametrize(("batch", "fraction"), [(2, 1 / 3), (3, 1 / 3), (5, 0.5), (4, 0.0), (4, 1.0)])
def test_foreground_count_expectation(batch, fraction):
    rng = np.random.default_rng(0)
    counts = np.array([foreground_count(batch, fraction, rng) for _ in range(4000)])
    expected = batch * fraction
    assert set(np.unique(counts)) <= {int(np.floor(expected)), int(np.ceil(expected))}
    assert counts.mean() == pytest.approx(expected, abs=0.03)


@pytest.mark.parametrize(
    ("start", "size"), [((-3, 2, 5), (6, 6, 6)), ((4, -10, -2), (30, 30, 4)), ((9, 9, 9), (3, 3, 3))]
)
def test_crop_patch_equals_padded_slice(start, size):
    array = np.arange(10 * 8 * 7, dtype=np.float32).reshape(10, 8, 7)
    pad = 40
    padded = np.pad(array, pad, constant_values=-5.0)
    s = np.asarray(start) + pad
    expected = padded[s[0]:s[0] + size[0], s[1]:s[1] + size[1], s[2]:s[2] + size[2]]
    np.testing.assert_array_equal(crop_patch(array, start, size, pad_value=-5.0), expected)


def test_random_start_covers_valid_range():
    rng = np.random.default_rng(1)
    starts = np.array([random_start((10, 4, 6), (4, 8, 6), rng) for _ in range(2000)])
    assert starts[:, 0].min() == 0 and starts[:, 0].max() == 6  # patch inside the volume
    assert starts[:, 1].min() == -4 and starts[:, 1].max() == 0  # volume inside the patch
    assert np.all(starts[:, 2] == 0)


def test_centered_start_and_pick():
    np.testing.assert_array_equal(centered_start((5, 5, 5), (4, 5, 6)), (3, 3, 2))
    rng = np.random.default_rng(2)
    locations = {1: np.array([[1, 2, 3], [4, 5, 6]]), 2: np.array([[7, 8, 9]]), 3: np.zeros((0, 3), int)}
    picks = [pick_foreground_voxel(locations, rng) for _ in range(3000)]
    classes = np.array([c for c, _ in picks])
    assert set(classes) == {1, 2} and np.mean(classes == 2) == pytest.approx(0.5, abs=0.04)
    assert all(tuple(v) in {(1, 2, 3), (4, 5, 6)} if c == 1 else tuple(v) == (7, 8, 9) for c, v in picks)
    assert pick_foreground_voxel({1: np.zeros((0, 3), int)}, rng) is None
