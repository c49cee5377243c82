"""preprocess_image / preprocess_label / restore_to_scan round trips on flipped and permuted phantoms."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medseg.data import make_phantom
from medseg.io import axcodes, to_canonical
from medseg.preprocessing.intensity import normalize_intensity
from medseg.preprocessing.plan import PreprocessingPlan
from medseg.preprocessing.transform import (
    PreprocessRecord,
    preprocess_image,
    preprocess_label,
    restore_labels,
    restore_to_scan,
)

PLAN = PreprocessingPlan.window((5.0, 5.5, 6.0))  # finer than the tiny phantom's ~8 x 8 x 8-10 mm


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.mark.parametrize("index", [0, 1, 2, 3])  # RAS, LPS, LPI, ALS storage
def test_label_roundtrip_lands_on_original_grid(index):
    case = make_phantom(size="tiny", seed=1, index=index)
    image, record = preprocess_image(case.image, PLAN)
    assert image.dtype == np.float32 and image.shape == record.resampled_shape
    np.testing.assert_allclose(record.spacing_after_mm, PLAN.target_spacing_mm, rtol=0.05)
    labels = preprocess_label(case.label, record)
    assert labels.dtype == np.uint8 and labels.shape == image.shape
    onehot = np.stack([labels == c for c in range(3)]).astype(np.float32)
    probs = restore_to_scan(onehot, record)
    assert probs.shape == (3, *case.label.shape) and probs.dtype == np.float32
    restored = probs.argmax(0)
    assert _dice(restored == 1, case.label.array == 1) > 0.95
    assert _dice(restored > 0, case.label.array > 0) > 0.95
    nearest = restore_labels(labels, record)
    assert nearest.shape == case.label.shape and _dice(nearest > 0, case.label.array > 0) > 0.95


@pytest.mark.parametrize("index", [1, 3])
def test_identity_spacing_roundtrip_is_exact(index):
    """With the target spacing equal to the scan's, restoring undoes the reorientation voxel for voxel."""
    case = make_phantom(size="tiny", seed=0, index=index)
    canonical, _ = to_canonical(case.image)
    plan = PreprocessingPlan((*canonical.spacing_mm,), "ct_zscore", clip_hu=(-200, 300), mean=40, std=90)
    image, record = preprocess_image(case.image, plan)
    assert axcodes(record.canonical_affine) == ("R", "A", "S") and image.shape == canonical.shape
    back = restore_to_scan(torch.from_numpy(image)[None], record)[0]
    np.testing.assert_allclose(back, normalize_intensity(case.image.array, plan), rtol=0, atol=1e-6)
    labels = preprocess_label(case.label, record)
    np.testing.assert_array_equal(restore_labels(labels, record), case.label.array)


def test_preprocessed_grid_matches_world_geometry(tiny_case):
    """The record's resampled affine maps the liver to the same world place as the original affine."""
    _, record = preprocess_image(tiny_case.image, PLAN)
    labels = preprocess_label(tiny_case.label, record)
    def centroid(mask, affine):
        return np.argwhere(mask).mean(0) @ affine[:3, :3].T + affine[:3, 3]
    original = centroid(tiny_case.label.array > 0, tiny_case.label.affine)
    np.testing.assert_allclose(centroid(labels > 0, record.resampled_affine), original, atol=2.0)


def test_record_json_roundtrip_and_input_untouched(tiny_case):
    before = tiny_case.image.array.copy()
    _, record = preprocess_image(tiny_case.image, PLAN)
    np.testing.assert_array_equal(tiny_case.image.array, before)
    again = PreprocessRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again.to_dict() == record.to_dict() and again.source_shape == tiny_case.image.shape


def test_restore_rejects_wrong_shape(tiny_case):
    _, record = preprocess_image(tiny_case.image, PLAN)
    with pytest.raises(ValueError, match="preprocessed shape"):
        restore_to_scan(np.zeros((3, 4, 4, 4), np.float32), record)
    with pytest.raises(ValueError, match="labels"):
        restore_labels(np.zeros((2, *record.resampled_shape), np.uint8), record)
