import math

import numpy as np
import pytest

from medseg.evaluation.overlap import overlap_from_counts, overlap_metrics


def test_hand_computed_counts():
    pred = np.zeros((6, 6), bool)
    ref = np.zeros((6, 6), bool)
    pred[0:3, 0:4] = True  # 12 voxels
    ref[1:4, 0:4] = True  # 12 voxels, 8 shared
    m = overlap_metrics(pred, ref)
    assert m["dice"] == pytest.approx(2 * 8 / 24)
    assert m["jaccard"] == pytest.approx(8 / 16)
    assert m["voe"] == pytest.approx(0.5)
    assert m["rvd"] == 0.0


def test_rvd_sign_follows_lits_paper():
    # prediction 20 % too large -> positive RVD
    m = overlap_from_counts(pred_voxels=120, ref_voxels=100, intersection_voxels=100)
    assert m["rvd"] == pytest.approx(0.2)
    assert m["dice"] == pytest.approx(200 / 220)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ((0, 0, 0), {"dice": 1.0, "jaccard": 1.0, "voe": 0.0, "rvd": 0.0}),
        ((5, 0, 0), {"dice": 0.0, "jaccard": 0.0, "voe": 1.0, "rvd": math.nan}),
        ((0, 5, 0), {"dice": 0.0, "jaccard": 0.0, "voe": 1.0, "rvd": -1.0}),
    ],
)
def test_empty_masks(counts, expected):
    m = overlap_from_counts(*counts)
    for key, value in expected.items():
        assert (math.isnan(m[key]) and math.isnan(value)) or m[key] == value, key


def test_inconsistent_counts_rejected():
    with pytest.raises(ValueError, match="inconsistent"):
        overlap_from_counts(3, 4, 5)
