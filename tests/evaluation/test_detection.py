"""Lesion AP and FROC: hand computations, scikit-learn's average_precision_score where the definitions meet."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from medseg.evaluation.detection import (
    LesionScores,
    average_precision,
    cohort_detection,
    froc_curve,
    plot_froc,
    score_lesions,
)

# five detections over the cohort, one of four reference lesions never reached
CONFIDENCE = [0.9, 0.8, 0.7, 0.6, 0.3]
MATCHED = [True, False, True, True, False]


def test_average_precision_by_hand():
    # (R, P) after each detection: (1/4, 1), (1/4, 1/2), (2/4, 2/3), (3/4, 3/4), (3/4, 3/5)
    expected = 1 / 4 * 1 + 1 / 4 * 2 / 3 + 1 / 4 * 3 / 4
    assert average_precision(CONFIDENCE, MATCHED, n_ref=4) == pytest.approx(expected)  # 29/48
    # scikit-learn sees only the detections (3 positives): larger by n_ref / n_matched = 4/3
    sk = average_precision_score(MATCHED, CONFIDENCE)
    assert sk == pytest.approx(29 / 36)
    assert average_precision(CONFIDENCE, MATCHED, n_ref=4) == pytest.approx(sk * 3 / 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_scikit_learn_when_every_reference_lesion_is_matched(seed):
    rng = np.random.default_rng(seed)
    confidence = rng.choice([0.2, 0.4, 0.6, 0.8, 1.0], size=30)  # ties included
    matched = rng.random(30) < 0.5
    ap = average_precision(confidence, matched, n_ref=int(matched.sum()))
    assert ap == pytest.approx(average_precision_score(matched, confidence))


def test_edge_cases():
    assert math.isnan(average_precision([0.5], [False], n_ref=0))  # nothing to find
    assert average_precision([], [], n_ref=3) == 0.0  # nothing found
    assert average_precision([1.0, 1.0, 1.0], [True, False, True], n_ref=4) == pytest.approx(2 / 3 * 2 / 4)  # P x R
    with pytest.raises(ValueError, match="n_ref"):
        average_precision([1.0, 1.0], [True, True], n_ref=1)


def test_froc_by_hand():
    curve = froc_curve(CONFIDENCE, MATCHED, n_ref=4, n_scans=2)
    assert curve["fp_per_scan"] == pytest.approx([0, 0.5, 0.5, 0.5, 1.0])
    assert curve["sensitivity"] == pytest.approx([0.25, 0.25, 0.5, 0.75, 0.75])
    assert curve["threshold"] == pytest.approx(CONFIDENCE)


def _scan():
    """A 3D scan: reference lesions A (exact hit), B (half covered: IoU 1/2, not > 1/2), C (missed); the
    prediction adds one spurious lesion D."""
    ref, pred = np.zeros((30, 20, 10), bool), np.zeros((30, 20, 10), bool)
    ref[2:6, 2:6, 2:6] = True  # A: 64 voxels
    ref[10:14, 2:6, 2:6] = True  # B
    ref[20:24, 2:6, 2:6] = True  # C
    pred[2:6, 2:6, 2:6] = True  # hits A exactly
    pred[10:12, 2:6, 2:6] = True  # half of B: IoU 32/64
    pred[2:5, 12:15, 2:5] = True  # D, spurious
    prob = np.zeros(ref.shape)
    prob[2:6, 2:6, 2:6], prob[3, 3, 3] = 0.6, 0.95  # A's maximum 0.95
    prob[10:12, 2:6, 2:6] = 0.7  # B-piece
    prob[2:5, 12:15, 2:5], prob[4, 14, 4] = 0.2, 0.4  # D's maximum 0.4
    return pred, ref, prob


def test_score_lesions_takes_the_maximum_probability_and_matches_above_the_iou():
    pred, ref, prob = _scan()
    scores = score_lesions(pred, ref, tumor_probability=prob)
    # labels follow scipy's raster order: A (x 2..5, y 2..5) first, then D (x 2..4, y 12..14), then the B piece
    np.testing.assert_allclose(scores.confidence, [0.95, 0.4, 0.7])
    np.testing.assert_array_equal(scores.matched, [True, False, False])
    np.testing.assert_allclose(scores.iou, [1.0, 0.0, 0.5])
    assert scores.n_ref == 3 and scores.probabilities
    assert score_lesions(pred, ref, tumor_probability=prob, iou_threshold=0.4).matched.tolist() == [True, False, True]
    fallback = score_lesions(pred, ref)
    np.testing.assert_array_equal(fallback.confidence, [1.0, 1.0, 1.0])
    assert not fallback.probabilities


def test_cohort_ap_and_froc_of_scored_scans():
    pred, ref, prob = _scan()
    first = score_lesions(pred, ref, tumor_probability=prob)
    second = LesionScores(np.array([0.5]), np.array([True]), np.array([0.8]), n_ref=1, probabilities=True)
    block = cohort_detection([first, second])
    # sorted: 0.95 TP, 0.7 FP, 0.5 TP, 0.4 FP over 4 reference lesions
    assert block["average_precision"] == pytest.approx(1 / 4 * 1 + 1 / 4 * 2 / 3)
    assert (block["n_pred"], block["n_ref"], block["tp"], block["fp"], block["n_scans"]) == (4, 4, 2, 2, 2)
    at = block["froc"]["sensitivity_at_fp_per_scan"]
    assert at["0.125"] == 0.25 and at["0.5"] == 0.5 and at["1.0"] == 0.5  # FP/scan 0, 0.5, 0.5, 1
    assert block["froc"]["cpm"] == pytest.approx((0.25 + 0.25 + 5 * 0.5) / 7)
    assert block["confidence"] == "max tumor probability"


def test_plot_froc(tmp_path):
    pred, ref, prob = _scan()
    path = plot_froc(cohort_detection([score_lesions(pred, ref, tumor_probability=prob)]), tmp_path / "froc.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_probability():
    pred, ref, prob = _scan()
    with pytest.raises(ValueError, match="probabilit"):
        score_lesions(pred, ref, tumor_probability=prob * 2)
    with pytest.raises(ValueError, match="shape"):
        score_lesions(pred, ref, tumor_probability=prob[1:])


def _dense_scores(pred, ref, confidence, iou_threshold):
    """The earlier dense computation: the full ``(n_pred + 1, n_ref + 1)`` IoU table and the greedy matching."""
    from medseg.evaluation.lesions import label_lesions

    pred_labels, n_pred = label_lesions(pred)
    ref_labels, n_ref = label_lesions(ref)
    joint = np.zeros((n_pred + 1, n_ref + 1))
    np.add.at(joint, (pred_labels.ravel(), ref_labels.ravel()), 1)
    union = joint.sum(axis=1)[:, None] + joint.sum(axis=0)[None, :] - joint
    iou = np.where(union > 0, joint / np.maximum(union, 1), 0.0)
    iou[0, :] = iou[:, 0] = 0.0
    matched, best, free = np.zeros(n_pred, bool), np.zeros(n_pred), np.arange(n_ref + 1) > 0
    for p in np.argsort(-confidence, kind="stable"):
        candidates = np.where(free, iou[p + 1], -1.0)
        r = int(np.argmax(candidates))
        best[p] = iou[p + 1].max()
        if candidates[r] > iou_threshold:
            matched[p], best[p], free[r] = True, iou[p + 1, r], False
    return matched, best, n_ref


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("iou_threshold", [0.0, 0.3, 0.5])
def test_sparse_matching_equals_the_dense_table(seed, iou_threshold):
    """Issue #29.8: the table holds only overlapping pairs; on random blobs (splits, merges, ties of confidence
    and IoU) every confidence, match and IoU equals the dense table's."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    ref = ndimage.binary_dilation(rng.random((32, 28, 16)) < 0.006)  # ~55 lesions, some touching
    moved = ref & (rng.random(ref.shape) > 0.15)  # voxels dropped: IoU ~0.85, some lesions split
    moved[:16] = np.roll(ref, 1, axis=2)[:16]  # half of the lesions shifted by one voxel: low IoU
    pred = moved ^ ndimage.binary_dilation(rng.random(ref.shape) < 0.004)  # cut, merged, spurious
    prob = rng.choice([0.25, 0.5, 0.75, 1.0], size=ref.shape)
    scores = score_lesions(pred, ref, tumor_probability=prob, iou_threshold=iou_threshold)
    matched, best, n_ref = _dense_scores(pred, ref, scores.confidence, iou_threshold)
    assert scores.confidence.size > 40 and n_ref > 40 and 0 < matched.sum() < n_ref  # a non-trivial case
    np.testing.assert_array_equal(scores.matched, matched)
    np.testing.assert_array_equal(scores.iou, best)
    assert scores.n_ref == n_ref
