"""Confusion-matrix metrics (Long et al. 2015, section 5) against hand computations and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from medseg.evaluation.confusion import confusion_matrix, confusion_metrics, confusion_row, pooled_matrix


def _maps(matrix):
    """Label maps (ref, pred) realising ``matrix`` (rows: reference class, columns: predicted class)."""
    ref, pred = [], []
    for i, row in enumerate(matrix):
        for j, n in enumerate(row):
            ref += [i] * n
            pred += [j] * n
    return np.array(pred, dtype=np.uint8).reshape(-1, 1), np.array(ref, dtype=np.uint8).reshape(-1, 1)


# class 2 absent from reference and prediction: NaN, skipped by every mean
ABSENT = [[5, 1, 0], [1, 3, 0], [0, 0, 0]]
# class 2 predicted but absent from the reference: IoU 0 (counts in mean IoU), accuracy NaN (skipped)
SPURIOUS = [[4, 0, 2], [0, 2, 0], [0, 0, 0]]


def test_class_absent_from_both_is_skipped():
    pred, ref = _maps(ABSENT)
    m = confusion_matrix(pred, ref, num_classes=3)
    np.testing.assert_array_equal(m, ABSENT)
    r = confusion_metrics(m)
    assert r["pixel_accuracy"] == pytest.approx(8 / 10)
    assert r["mean_class_accuracy"] == pytest.approx((5 / 6 + 3 / 4) / 2)
    assert r["mean_iou"] == pytest.approx((5 / 7 + 3 / 5) / 2)  # IoU_0 = 5 / (6 + 6 - 5), IoU_1 = 3 / (4 + 4 - 3)
    assert r["frequency_weighted_iou"] == pytest.approx((6 * 5 / 7 + 4 * 3 / 5) / 10)
    assert r["per_class"]["0"]["f1"] == pytest.approx(10 / 12)
    assert r["per_class"]["1"]["f1"] == pytest.approx(6 / 8)
    assert all(math.isnan(r["per_class"]["2"][k]) for k in ("iou", "f1", "accuracy"))
    assert (r["n_skipped"], r["n_skipped_accuracy"], r["n_voxels"]) == (1, 1, 10)


def test_class_predicted_but_absent_from_reference_counts_as_zero_iou():
    pred, ref = _maps(SPURIOUS)
    r = confusion_metrics(confusion_matrix(pred, ref, num_classes=3), class_names=["bg", "liver", "tumor"])
    assert r["pixel_accuracy"] == pytest.approx(6 / 8)
    assert r["mean_class_accuracy"] == pytest.approx((4 / 6 + 1) / 2)
    assert r["mean_iou"] == pytest.approx((4 / 6 + 1 + 0) / 3)
    assert r["frequency_weighted_iou"] == pytest.approx((6 * 4 / 6 + 2 * 1) / 8)
    assert r["per_class"]["tumor"]["iou"] == 0.0 and r["per_class"]["tumor"]["f1"] == 0.0
    assert math.isnan(r["per_class"]["tumor"]["accuracy"])
    assert (r["n_skipped"], r["n_skipped_accuracy"]) == (0, 1)


def test_pooled_matrix_scores_every_voxel_of_the_cohort_once():
    pooled = pooled_matrix([np.array(ABSENT), np.array(SPURIOUS)[:2, :2], np.array(SPURIOUS)])
    expected = np.array(ABSENT) + np.array(SPURIOUS)
    expected[:2, :2] += np.array(SPURIOUS)[:2, :2]  # the 2-class matrix is padded with zeros
    np.testing.assert_array_equal(pooled, expected)


def test_empty_volume():
    r = confusion_metrics(confusion_matrix(np.zeros((0, 3), int), np.zeros((0, 3), int), num_classes=2))
    assert math.isnan(r["pixel_accuracy"]) and math.isnan(r["mean_iou"]) and math.isnan(r["frequency_weighted_iou"])
    assert r["n_skipped"] == 2


@pytest.mark.parametrize("seed", [0, 1])
def test_random_label_maps_agree_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 4, size=(17, 13, 5))
    pred = np.where(rng.random(ref.shape) < 0.7, ref, rng.integers(0, 4, size=ref.shape))
    m = confusion_matrix(pred, ref, num_classes=4)
    np.testing.assert_array_equal(m, skm.confusion_matrix(ref.ravel(), pred.ravel(), labels=range(4)))
    r = confusion_metrics(m)
    labels = list(range(4))
    assert r["pixel_accuracy"] == pytest.approx(skm.accuracy_score(ref.ravel(), pred.ravel()))
    assert r["mean_class_accuracy"] == pytest.approx(skm.balanced_accuracy_score(ref.ravel(), pred.ravel()))
    iou = skm.jaccard_score(ref.ravel(), pred.ravel(), labels=labels, average=None)
    f1 = skm.f1_score(ref.ravel(), pred.ravel(), labels=labels, average=None)
    np.testing.assert_allclose([r["per_class"][str(i)]["iou"] for i in labels], iou)
    np.testing.assert_allclose([r["per_class"][str(i)]["f1"] for i in labels], f1)
    assert r["mean_iou"] == pytest.approx(iou.mean())
    weights = np.bincount(ref.ravel(), minlength=4) / ref.size
    assert r["frequency_weighted_iou"] == pytest.approx(float(np.sum(weights * iou)))


def test_chunked_counting_equals_one_bincount(monkeypatch):
    import medseg.evaluation.confusion as module

    rng = np.random.default_rng(3)
    ref, pred = rng.integers(0, 3, size=1000), rng.integers(0, 3, size=1000)
    whole = confusion_matrix(pred, ref, num_classes=3)
    monkeypatch.setattr(module, "_CHUNK", 7)
    np.testing.assert_array_equal(confusion_matrix(pred, ref, num_classes=3), whole)
    np.testing.assert_array_equal(whole.ravel(), np.bincount(ref * 3 + pred, minlength=9))


def test_row_holds_metrics_and_counts():
    row = confusion_row(np.array(ABSENT))
    assert row["cm_0_1"] == 1 and row["cm_1_1"] == 3 and row["cm_2_2"] == 0
    assert row["pixel_accuracy"] == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("pred", "ref", "message"),
    [(np.array([0, 3]), np.array([0, 1]), "prediction holds label 3"),
     (np.array([0, 1]), np.array([-1, 1]), "reference holds label -1"),
     (np.array([0, 1]), np.array([0, 1, 1]), "shape")],
)  # fmt: skip
def test_bad_input(pred, ref, message):
    with pytest.raises(ValueError, match=message):
        confusion_matrix(pred, ref, num_classes=3)


def test_confusion_matrix_of_fortran_maps_takes_no_whole_volume_copy(monkeypatch):
    """Slabs of the outermost axis in memory: nibabel's Fortran order costs no copy of the map (a
    ``reshape(-1)`` copies it); the counts equal a direct count."""
    import tracemalloc

    from medseg.evaluation import confusion

    monkeypatch.setattr(confusion, "_CHUNK", 1 << 15)  # 32 Ki-voxel chunks: 0.5 MB of int64 each

    rng = np.random.default_rng(0)
    ref = np.asfortranarray(rng.integers(0, 3, size=(200, 180, 120), dtype=np.uint8))
    pred = np.asfortranarray(rng.integers(0, 3, size=ref.shape, dtype=np.uint8))
    tracemalloc.start()
    try:
        matrix = confusion_matrix(pred, ref, num_classes=3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * ref.nbytes, f"peak {peak / 1e6:.2f} MB for a {ref.nbytes / 1e6:.2f} MB map"
    expected = [[int(np.count_nonzero((ref == i) & (pred == j))) for j in range(3)] for i in range(3)]
    assert matrix.tolist() == expected
