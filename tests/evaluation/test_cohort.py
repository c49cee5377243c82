import math

import pandas as pd
import pytest

from medseg.evaluation import summarize


def test_summary_from_hand_built_rows():
    frame = pd.DataFrame(
        {
            "case": ["a", "b", "c"],
            "liver_dice": [0.9, 0.8, 1.0],
            "liver_hd95_mm": [2.0, math.nan, 4.0],
            "liver_pred_voxels": [100, 50, 0],
            "liver_ref_voxels": [80, 70, 0],
            "liver_intersection_voxels": [70, 40, 0],
            "lesions_tp": [2, 1, 0],
            "lesions_fp": [1, 0, 1],
            "lesions_fn": [0, 2, 0],
            "tumor_burden_error_percent": [1.0, -3.0, math.nan],
        }
    )
    s = summarize(frame)
    liver = s["regions"]["liver"]
    assert liver["dice"]["mean"] == pytest.approx(0.9)
    assert liver["dice"]["std"] == pytest.approx(pd.Series([0.9, 0.8, 1.0]).std())  # sample SD, as pandas: 0.1
    assert liver["dice"]["std"] == pytest.approx(0.1)
    low, high = liver["dice"]["ci95"]
    assert 0.8 <= low < 0.9 < high <= 1.0
    assert s["statistics"]["seed"] == 0 and "percentile bootstrap" in s["statistics"]["ci"]
    assert liver["hd95_mm"]["mean"] == 3.0 and liver["hd95_mm"]["n_nan"] == 1 and liver["hd95_mm"]["n"] == 2
    assert liver["dice_global"] == pytest.approx(2 * 110 / 300)
    det = s["detection"]
    assert (det["tp"], det["fp"], det["fn"]) == (3, 2, 2)
    assert det["precision"] == pytest.approx(3 / 5) and det["recall"] == pytest.approx(3 / 5)
    assert det["f1"] == pytest.approx(0.6)
    assert s["tumor_burden"]["rmse_percent"] == pytest.approx(math.sqrt((1 + 9) / 2))
    assert s["tumor_burden"]["max_abs_error_percent"] == 3.0 and s["tumor_burden"]["n_nan"] == 1


def test_summary_counts_references_with_a_tumor():
    frame = pd.DataFrame({"case": ["a", "b", "c", "d"], "tumor_ref_voxels": [0, 12, 0, 3],
                          "tumor_pred_voxels": [0, 10, 5, 0], "tumor_intersection_voxels": [0, 9, 0, 0],
                          "tumor_dice": [1.0, 0.9, 0.0, 0.0]})
    assert summarize(frame)["references"] == {"with_tumor": 2, "without_tumor": 2}
    assert "references" not in summarize(frame.drop(columns="tumor_ref_voxels"))
