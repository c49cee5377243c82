import math

import numpy as np
import pandas as pd
import pytest

from medseg.evaluation import evaluate_case, summarize, to_dataframe


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
            "tumor_burden_error": [1.0, -3.0, math.nan],
        }
    )
    s = summarize(frame)
    liver = s["regions"]["liver"]
    assert liver["dice"]["mean"] == pytest.approx(0.9)
    assert liver["dice"]["std"] == pytest.approx(np.std([0.9, 0.8, 1.0]))
    assert liver["hd95_mm"]["mean"] == 3.0 and liver["hd95_mm"]["n_nan"] == 1 and liver["hd95_mm"]["n"] == 2
    assert liver["dice_global"] == pytest.approx(2 * 110 / 300)
    det = s["detection"]
    assert (det["tp"], det["fp"], det["fn"]) == (3, 2, 2)
    assert det["precision"] == pytest.approx(3 / 5) and det["recall"] == pytest.approx(3 / 5)
    assert det["f1"] == pytest.approx(0.6)
    assert s["tumor_burden"]["rmse_percent"] == pytest.approx(math.sqrt((1 + 9) / 2))
    assert s["tumor_burden"]["max_abs_error_percent"] == 3.0 and s["tumor_burden"]["n_nan"] == 1


def test_case_row_contract(tiny_case):
    ref = tiny_case.label.array
    pred = ref.copy()
    pred[pred == 2] = 1  # tumor missed entirely
    result = evaluate_case(pred, ref, spacing_mm=tiny_case.label.spacing_mm, case="3")
    row = result.row
    assert row["case"] == "3"
    for region in ("liver", "tumor"):
        for key in ("dice", "jaccard", "voe", "rvd", "assd_mm", "mssd_mm", "hd95_mm", "rmsd_mm", "nsd"):
            assert f"{region}_{key}" in row
    assert row["liver_dice"] == 1.0 and row["liver_hd95_mm"] == 0.0
    assert row["tumor_dice"] == 0.0 and math.isnan(row["tumor_hd95_mm"])
    n = tiny_case.info["lesion_count"]
    assert (row["lesions_tp"], row["lesions_fp"], row["lesions_fn"]) == (0, 0, n)
    assert row["tumor_burden_pred"] == 0.0
    assert row["tumor_burden_ref"] == pytest.approx(tiny_case.info["tumor_burden_percent"])
    assert row["tumor_ref_volume_ml"] == pytest.approx(tiny_case.info["tumor_ml"])
    assert len(to_dataframe([result])) == 1


def test_summary_counts_references_with_a_tumor():
    frame = pd.DataFrame({"case": ["a", "b", "c", "d"], "tumor_ref_voxels": [0, 12, 0, 3],
                          "tumor_pred_voxels": [0, 10, 5, 0], "tumor_intersection_voxels": [0, 9, 0, 0],
                          "tumor_dice": [1.0, 0.9, 0.0, 0.0]})
    assert summarize(frame)["references"] == {"with_tumor": 2, "without_tumor": 2}
    assert "references" not in summarize(frame.drop(columns="tumor_ref_voxels"))
