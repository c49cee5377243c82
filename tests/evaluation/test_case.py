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
    assert row["tumor_burden_pred_percent"] == 0.0
    assert row["tumor_burden_ref_percent"] == pytest.approx(tiny_case.info["tumor_burden_percent"])
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
    assert row["tumor_burden_pred_percent"] == pytest.approx(25.0)
    assert row["tumor_burden_ref_percent"] == pytest.approx(25.0)
    assert row["tumor_burden_error_percent"] == pytest.approx(0.0)
    assert row["liver_dice"] == pytest.approx(2 * 16 / 36) and row["tumor_dice"] == pytest.approx(2 * 4 / 9)
    assert row["tumor_ref_volume_ml"] == pytest.approx(5 * 2.0 / 1000)
    empty = evaluate_case(np.zeros_like(ref), np.zeros_like(ref), spacing_mm=(1, 1, 1)).row
    assert empty["tumor_burden_pred_percent"] == 0.0 and empty["liver_dice"] == 1.0
    all_tumor = np.where(ref > 0, 2, 0).astype(np.uint8)  # the whole liver is tumor: burden 100 %
    row = evaluate_case(pred, all_tumor, spacing_mm=(1, 1, 1)).row
    assert row["tumor_burden_ref_percent"] == 100.0 and row["tumor_burden_error_percent"] == pytest.approx(25.0 - 100.0)


def _nifti_ordered_pair(shape=(320, 300, 160)):
    """A prediction/reference pair as nibabel returns them (Fortran order): a liver block with two lesions."""
    ref = np.zeros(shape, np.uint8, order="F")
    ref[50:100, 40:95, 30:80] = 1
    ref[60:70, 50:60, 40:50] = 2
    ref[85:92, 80:88, 65:72] = 2
    pred = np.asfortranarray(np.roll(ref, (1, 0, 1), axis=(0, 1, 2)))  # first lesion: IoU 810 / 1190
    pred[86:92, 81:88, 66:71] = 1  # second lesion missed
    return pred, ref


def test_evaluate_case_takes_no_whole_volume_copy_of_fortran_maps():
    """Memory order: nibabel's Fortran-ordered maps are evaluated on views of the labelled box, so the peak of
    new allocations stays below half of one map (a region mask of the whole map alone would be one map; the
    box is 0.9% of it); the row equals the row of C-ordered copies."""
    import tracemalloc

    pred, ref = _nifti_ordered_pair()
    assert pred.flags.f_contiguous and not pred.flags.c_contiguous
    spacing = (0.8, 0.7, 2.5)
    evaluate_case(pred, ref, spacing_mm=spacing)  # warm-up: imports, caches
    tracemalloc.start()
    try:
        row = evaluate_case(pred, ref, spacing_mm=spacing, case="f").row
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * ref.nbytes, f"peak {peak / 1e6:.2f} MB for a {ref.nbytes / 1e6:.2f} MB map"
    expected = evaluate_case(np.ascontiguousarray(pred), np.ascontiguousarray(ref), spacing_mm=spacing, case="f").row
    assert row.keys() == expected.keys()
    for key, value in expected.items():
        assert row[key] == value or (isinstance(value, float) and math.isnan(value) and math.isnan(row[key])), key
    # hand-checked figures of the pair: the background count is the whole array minus the labelled voxels
    assert row["cm_0_0"] == int(np.count_nonzero((pred == 0) & (ref == 0)))
    assert (row["lesions_ref"], row["lesions_tp"], row["lesions_fn"]) == (2, 1, 1)
