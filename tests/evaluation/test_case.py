"""evaluate_case: the per_case.csv row of one pair of LiTS label maps."""

import math

import numpy as np
import pytest

from medseg.evaluation import evaluate_case, to_dataframe


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


def test_burden_and_voxel_counts_hand_computed():
    """Reference: 20 liver voxels of which 5 tumor; prediction: 16 liver voxels of which 4 tumor."""
    ref = np.zeros((6, 6, 6), np.uint8)
    ref[1:5, 1:6, 2] = 1  # 20 voxels
    ref[1, 1:6, 2] = 2  # 5 of them tumor
    pred = np.zeros_like(ref)
    pred[1:5, 1:5, 2] = 1  # 16 voxels
    pred[1, 1:5, 2] = 2  # 4 tumor
    row = evaluate_case(pred, ref, spacing_mm=(1.0, 1.0, 2.0), case="h").row
    assert (row["liver_pred_voxels"], row["liver_ref_voxels"], row["liver_intersection_voxels"]) == (16, 20, 16)
    assert (row["tumor_pred_voxels"], row["tumor_ref_voxels"], row["tumor_intersection_voxels"]) == (4, 5, 4)
    assert row["tumor_burden_pred"] == pytest.approx(25.0) and row["tumor_burden_ref"] == pytest.approx(25.0)
    assert row["tumor_burden_error"] == pytest.approx(0.0)
    assert row["liver_dice"] == pytest.approx(2 * 16 / 36) and row["tumor_dice"] == pytest.approx(2 * 4 / 9)
    assert row["tumor_ref_volume_ml"] == pytest.approx(5 * 2.0 / 1000)
    empty = evaluate_case(np.zeros_like(ref), np.zeros_like(ref), spacing_mm=(1, 1, 1)).row
    assert empty["tumor_burden_pred"] == 0.0 and empty["liver_dice"] == 1.0
    all_tumor = np.where(ref > 0, 2, 0).astype(np.uint8)  # the whole liver is tumor: burden 100 %
    row = evaluate_case(pred, all_tumor, spacing_mm=(1, 1, 1)).row
    assert row["tumor_burden_ref"] == 100.0 and row["tumor_burden_error"] == pytest.approx(25.0 - 100.0)
