"""The LiTS 2017 scorer's conventions, each on a constructed case whose answer is worked out here by hand
or by brute force (never by calling the code under test twice)."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from medseg.evaluation import binary_metrics, evaluate_case, match_lesions, surface_voxels
from medseg.evaluation.case import EvaluationConfig
from medseg.evaluation.cohort import lesions_dataframe, to_dataframe
from medseg.evaluation.lits2017 import (
    LARGE,
    evaluate_case_lits2017,
    scores_text,
    segmentation_scores,
    summarize_lits2017,
)
from medseg.evaluation.protocols import score_case

SPACING = (0.7, 1.3, 2.5)


def _liver(shape=(24, 24, 16)) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[1:-1, 1:-1, 1:-1] = 1
    return labels


def _score(pred, ref, spacing=SPACING):
    return evaluate_case_lits2017(pred, ref, spacing_mm=spacing, case="c")


def _summary(*results):
    return summarize_lits2017(to_dataframe(results), lesions_dataframe(results))


def test_lesions_touching_at_a_corner_are_two_under_6_connectivity():
    ref, pred = _liver(), _liver()
    ref[2:5, 2:5, 2:5] = 2
    ref[5:8, 5:8, 5:8] = 2  # shares only the corner (4,4,4)-(5,5,5) with the first cube
    pred[2:5, 2:5, 2:5] = 2  # exactly the first cube
    row = _score(pred, ref).row
    # 6-connected: two reference lesions of 27 voxels; the first found exactly (IoU 1), the second missed
    assert (row["n_reference"], row["n_predicted"]) == (2, 1)
    assert (row["TP"], row["FP"], row["FN"]) == (1, 0, 1)
    # medseg's default (26-connected): one lesion of 54 voxels, IoU 27/54 = 0.5 is not > 0.5
    medseg = match_lesions(pred == 2, ref == 2, spacing_mm=SPACING)
    assert (medseg["n_ref"], medseg["tp"], medseg["fp"], medseg["fn"]) == (1, 0, 1, 1)


def test_split_lesion_costs_a_false_positive():
    ref, pred = _liver(), _liver()
    ref[2:6, 2:8, 2:6] = 2  # 4 x 6 x 4 = 96 voxels
    pred[2:6, 2:4, 2:6] = 2  # 32 voxels
    pred[2:6, 5:8, 2:6] = 2  # 48 voxels, a one-voxel gap at y = 4
    result = _score(pred, ref)
    assert (result.row["TP"], result.row["FP"], result.row["FN"]) == (1, 1, 0)  # FP = 2 predicted - 1 TP
    (lesion,) = result.lesions
    assert lesion["n_predicted_matched"] == 2 and lesion["iou"] == pytest.approx(80 / 96)
    assert lesion["dice"] == pytest.approx(2 * 80 / (96 + 80))
    assert lesion["jaccard"] == pytest.approx(80 / 96) and lesion["voe"] == pytest.approx(16 / 96)
    assert lesion["rvd"] == pytest.approx((80 - 96) / 96)  # the paper's sign: prediction too small < 0
    medseg = match_lesions(pred == 2, ref == 2, spacing_mm=SPACING)
    assert (medseg["tp"], medseg["fp"], medseg["fn"]) == (1, 0, 0)


@pytest.mark.parametrize(
    ("box", "iou", "counts", "counts_greater_zero"),
    [
        ((slice(2, 4), slice(2, 12), slice(2, 4)), 24 / 40, (1, 0, 2), (1, 0, 2)),  # detected once
        ((slice(1, 5), slice(1, 13), slice(1, 5)), 24 / 192, (0, 1, 3), (1, 0, 2)),  # scorer: TP = 1 - 3 = -2
    ],
)
def test_three_lesions_covered_by_one_prediction_are_merged(box, iou, counts, counts_greater_zero):
    ref, pred = _liver(), _liver()
    for y in (2, 6, 10):
        ref[2:4, y : y + 2, 2:4] = 2  # three 8-voxel lesions in a row
    pred[box] = 2
    result = _score(pred, ref)
    (group,) = result.lesions
    assert group["reference_lesions"] == "1 2 3" and group["iou"] == pytest.approx(iou)
    assert (result.row["TP"], result.row["FP"], result.row["FN"]) == counts
    greater_zero = (result.row["TP_greater_zero"], result.row["FP_greater_zero"], result.row["FN_greater_zero"])
    assert greater_zero == counts_greater_zero
    assert min(counts) >= 0


def test_iou_union_does_not_depend_on_label_order():
    """The scorer counted the union on a mask relabelled with reference labels: here prediction 1 covers
    reference lesion 2 and prediction 2 covers reference lesion 1, which made it miss lesion 2."""
    ref, pred = _liver(), _liver()
    ref[2:5, 10:13, 2:5] = 2  # reference 1 (first voxel (2, 10, 2)), 27 voxels
    ref[3:6, 2:5, 2:5] = 2  # reference 2 (first voxel (3, 2, 2)), 27 voxels
    pred[2:6, 2:5, 2:5] = 2  # prediction 1 (first voxel (2, 2, 2)): 36 voxels over reference 2
    pred[2:5, 10:13, 2:5] = 2  # prediction 2: exactly reference 1
    result = _score(pred, ref)
    assert (result.row["TP"], result.row["FP"], result.row["FN"]) == (2, 0, 0)
    assert [round(lesion["iou"], 6) for lesion in result.lesions] == [1.0, round(27 / 36, 6)]


def _brute_surface(mask: np.ndarray, max_l1: int) -> np.ndarray:
    """Voxels of ``mask`` with a neighbour (offset with |offset|_1 <= max_l1) outside it or the array."""
    out = np.zeros_like(mask)
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=3) if 0 < sum(map(abs, o)) <= max_l1]
    for idx in zip(*np.nonzero(mask)):
        for o in offsets:
            n = tuple(i + d for i, d in zip(idx, o))
            if any(c < 0 or c >= s for c, s in zip(n, mask.shape)) or not mask[n]:
                out[idx] = True
                break
    return out


def _brute_distances(surface_a, surface_b, spacing):
    a, b = np.argwhere(surface_a) * spacing, np.argwhere(surface_b) * spacing
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return d.min(axis=1), d.min(axis=0)


def test_18_neighbour_surface_distances_on_a_notched_cube():
    ref = np.zeros((9, 9, 8), bool)
    ref[1:6, 1:6, 1:6] = True
    ref[1, 1, :] = False  # remove one edge: its neighbours gain edge- but not face-neighbours outside
    pred = np.zeros_like(ref)
    pred[2:7, 1:7, 2:7] = True
    spacing = np.asarray(SPACING)
    s18, s6 = _brute_surface(ref, 2), _brute_surface(ref, 1)
    np.testing.assert_array_equal(surface_voxels(ref, connectivity=2), s18)
    assert s18.sum() > s6.sum()  # the 18-neighbourhood surface is thicker
    d_pr, d_rp = _brute_distances(_brute_surface(pred, 2), s18, spacing)
    n = d_pr.size + d_rp.size
    scores = segmentation_scores(pred, ref, spacing_mm=SPACING)
    assert scores["assd"] == pytest.approx((d_pr.sum() + d_rp.sum()) / n)
    assert scores["rmsd"] == pytest.approx(math.sqrt(((d_pr**2).sum() + (d_rp**2).sum()) / n))
    assert scores["msd"] == pytest.approx(max(d_pr.max(), d_rp.max()))
    d6_pr, d6_rp = _brute_distances(_brute_surface(pred, 1), s6, spacing)
    medseg = binary_metrics(pred, ref, spacing_mm=SPACING)
    assert medseg["assd_mm"] == pytest.approx((d6_pr.sum() + d6_rp.sum()) / (d6_pr.size + d6_rp.size))
    assert scores["assd"] < medseg["assd_mm"]  # extra inner surface voxels lie close to the other surface


def test_prediction_with_only_tumor_label_has_no_liver():
    ref = _liver()
    ref[4:8, 4:8, 4:8] = 2
    pred = np.zeros_like(ref)
    pred[4:8, 4:8, 4:8] = 2  # the tumor, exactly, and no label 1
    row = _score(pred, ref).row
    assert not row["liver_exists"]
    assert (row["liver_dice"], row["liver_jaccard"], row["liver_voe"]) == (0.0, 0.0, 1.0)
    assert row["liver_rvd"] == row["liver_assd"] == row["liver_rmsd"] == row["liver_msd"] == LARGE == 9001
    liver_ref = int(np.count_nonzero(ref >= 1))
    assert row["tumor_burden_diff"] == pytest.approx(64 / liver_ref - 9001)
    assert (row["liver_I"], row["liver_S"]) == (0, liver_ref)  # only the reference liver counts
    assert (row["TP"], row["lesion_dice_per_case"]) == (1, 1.0)
    medseg = evaluate_case(pred, ref, spacing_mm=SPACING).row  # medseg: the tumor is liver, Dice > 0
    assert medseg["liver_dice"] == pytest.approx(2 * 64 / (64 + liver_ref))
    scores = _summary(_score(pred, ref))["scores"]
    assert scores["liver_dice_global"] == 0.0 and scores["MAXERROR_Tumorburden"] == pytest.approx(64 / liver_ref - 9001)


def test_empty_denominators_give_zero_precision_and_recall():
    no_lesions = _liver()
    spurious = _liver()
    spurious[3:5, 3:5, 3:5] = 2
    clean = _summary(_score(no_lesions, no_lesions))
    assert clean["scores"]["lesion_precision"] == 0.0 and clean["scores"]["lesion_recall"] == 0.0
    assert clean["scores"]["lesion_dice_per_case"] == 1.0 and math.isnan(clean["scores"]["lesion_dice_global"])
    # no lesion detected anywhere: the scorer's defaults for the per-lesion scores
    assert clean["scores"]["lesion_dice"] == 0.0 and clean["scores"]["lesion_assd"] == LARGE
    # a reference without lesions (the scorer crashed): FP = predicted lesions
    row = _score(spurious, no_lesions).row
    assert (row["TP"], row["FP"], row["FN"]) == (0, 1, 0) and row["lesion_dice_per_case"] == 0.0
    scores = _summary(_score(spurious, no_lesions))["scores"]
    assert scores["lesion_precision"] == 0.0 and scores["lesion_recall"] == 0.0  # TP + FN = 0: 0, not NaN


def test_tumor_burden_is_a_fraction_with_a_signed_maximum():
    ref = _liver()  # 22 x 22 x 14 = 6776 liver voxels
    liver = int(np.count_nonzero(ref))
    ref[2:12, 2:12, 2:6] = 2  # 400 tumor voxels
    small, large = ref.copy(), ref.copy()
    small[2:7, 2:12, 2:6] = 1  # 200 tumor voxels left
    large[12:22, 2:12, 2:6] = 2  # 800 tumor voxels
    diffs = [400 / liver - 200 / liver, 400 / liver - 800 / liver]
    scores = _summary(_score(small, ref), _score(large, ref))["scores"]
    assert scores["RMSE_Tumorburden"] == pytest.approx(math.sqrt(np.mean(np.square(diffs))))
    assert scores["MAXERROR_Tumorburden"] == pytest.approx(diffs[0])  # +0.0295, not |-0.059|


def test_reference_without_liver_has_undefined_burden():
    pred = _liver()
    result = _score(pred, np.zeros_like(pred))
    assert math.isnan(result.row["tumor_burden_diff"]) and result.row["liver_dice"] == 0.0
    summary = _summary(result)
    assert summary["tumor_burden"] == {"n": 0, "n_nan": 1}


def test_cohort_lesion_scores_average_detected_lesions():
    ref, pred = _liver(), _liver()
    ref[2:6, 2:6, 2:6] = 2  # 64 voxels
    pred[2:6, 2:6, 2:5] = 2  # 48 inside: detected, dice 96/112
    ref[10:14, 10:14, 10:14] = 2  # missed entirely
    one = _score(pred, ref)
    two = _score(ref, ref)  # both lesions exact: dice 1
    summary = _summary(one, two)
    assert summary["scores"]["lesion_dice"] == pytest.approx((96 / 112 + 1 + 1) / 3)
    assert summary["scores"]["lesion_recall"] == pytest.approx(3 / 4)
    assert summary["scores"]["lesion_precision"] == pytest.approx(3 / 3)
    assert summary["detection"]["TP"] == 3 and summary["n_cases"] == 2
    text = scores_text(summary["scores"])
    assert text.splitlines()[0] == "lesion_precision: 1.000" and "MAXERROR_Tumorburden: " in text


def test_protocol_argument():
    ref = _liver()
    assert "TP" in score_case("lits2017", ref, ref, spacing_mm=SPACING).row
    assert score_case("medseg", ref, ref, spacing_mm=SPACING).row == evaluate_case(ref, ref, spacing_mm=SPACING).row
    with pytest.raises(ValueError, match="protocol"):
        score_case("lits2018", ref, ref, spacing_mm=SPACING)
    with pytest.raises(ValueError, match="does not apply"):
        score_case("lits2017", ref, ref, spacing_mm=SPACING, config=EvaluationConfig(connectivity=1))
    with pytest.raises(ValueError, match="3D"):
        evaluate_case_lits2017(ref[..., 0], ref[..., 0], spacing_mm=(1, 1))
    assert isinstance(to_dataframe([_score(ref, ref)]), pd.DataFrame)


def test_reference_lesions_merge_only_under_their_best_prediction():
    """Prediction 1 touches both reference lesions but overlaps the second less than prediction 2 does:
    nothing merges; prediction 1 is matched to the group it overlaps most."""
    ref, pred = _liver(), _liver()
    ref[2:6, 2:6, 2:6] = 2  # reference 1: 64 voxels
    ref[2:6, 8:12, 2:6] = 2  # reference 2: 64 voxels
    pred[2:6, 2:9, 2:6] = 2  # prediction 1: 112 voxels, 64 on reference 1, 16 on reference 2
    pred[2:6, 10:12, 2:6] = 2  # prediction 2: 32 voxels, all on reference 2
    result = _score(pred, ref)
    first, second = result.lesions
    assert first["reference_lesions"] == "1" and second["reference_lesions"] == "2"
    assert first["iou"] == pytest.approx(64 / 112) and first["detected"]
    assert second["n_predicted_matched"] == 1 and second["iou"] == pytest.approx(32 / 64)  # not > 0.5
    assert (result.row["TP"], result.row["FP"], result.row["FN"]) == (1, 1, 1)


def test_prediction_goes_to_the_group_it_overlaps_most_even_if_it_owns_another():
    """Prediction 1 is reference 1's best match (its only one) but overlaps reference 2 more, where
    prediction 2 is better still: prediction 1 is matched to reference 2, and reference 1 goes undetected."""
    ref, pred = _liver(), _liver()
    ref[2:4, 2:4, 2:6] = 2  # reference 1: 16 voxels, of which prediction 1 covers 8
    ref[2:8, 6:12, 2:6] = 2  # reference 2: 144 voxels
    pred[2:4, 3:4, 2:6] = 2  # prediction 1: 8 voxels on reference 1 ...
    pred[2:4, 4:8, 2:6] = 2  # ... joined (y = 4, 5: background) to 16 voxels on reference 2: 40 voxels
    pred[5:8, 6:12, 2:6] = 2  # prediction 2: 72 voxels on reference 2 (x = 4: gap to prediction 1)
    result = _score(pred, ref)
    first, second = result.lesions
    assert first["n_predicted_matched"] == 0 and first["iou"] == 0.0 and not first["detected_greater_zero"]
    assert second["n_predicted_matched"] == 2
    assert second["iou"] == pytest.approx((16 + 72) / (144 + 40 + 72 - 16 - 72))  # 88 / 168 > 0.5
    assert (result.row["TP"], result.row["FP"], result.row["FN"]) == (1, 1, 1)


def _sequential_groups(pred_labels, ref_labels):
    """The scorer's procedure step by step on a dense overlap matrix: predicted lesions in label order merge
    the reference lesions (columns) for which they are the largest overlap (numpy's first-index argmax),
    then each predicted lesion goes to the column it overlaps most."""
    n_pred, n_ref = int(pred_labels.max()), int(ref_labels.max())
    full = np.zeros((n_pred + 1, n_ref + 1), np.int64)
    np.add.at(full, (pred_labels.ravel(), ref_labels.ravel()), 1)
    rows = [p for p in range(1, n_pred + 1) if full[p, 1:].any()]
    matrix, columns = full[rows, 1:].copy(), [[g] for g in range(1, n_ref + 1)]
    for i in range(len(rows)):
        hits = [j for j in range(len(columns)) if matrix[i, j] > 0 and np.argmax(matrix[:, j]) == i]
        for j in reversed(hits[1:]):
            matrix[:, hits[0]] += matrix[:, j]
            columns[hits[0]] += columns.pop(j)
            matrix = np.delete(matrix, j, axis=1)
    best = matrix.argmax(axis=1) if rows else np.zeros(0, int)
    ref_sizes, pred_sizes = full[:, 1:].sum(axis=0), full[1:, :].sum(axis=1)
    out = []
    for j, members in enumerate(columns):
        chosen = [i for i in range(len(rows)) if best[i] == j]
        inter = int(sum(matrix[i, j] for i in chosen))
        size = sum(int(ref_sizes[g - 1]) for g in members) + sum(int(pred_sizes[rows[i] - 1]) for i in chosen)
        out.append((sorted(members), sorted(rows[i] for i in chosen), inter, size - inter))
    return sorted(out)


def test_grouping_equals_the_step_by_step_procedure_on_random_lesions():
    from scipy import ndimage

    from medseg.evaluation.lits2017 import group_lesions

    rng = np.random.default_rng(7)
    structure = ndimage.generate_binary_structure(3, 1)
    merged = 0
    for _ in range(150):
        ref = ndimage.label(rng.random((9, 9, 5)) < 0.3, structure=structure)[0]
        pred = ndimage.label(rng.random((9, 9, 5)) < 0.3, structure=structure)[0]
        if not ref.any():
            continue
        expected = _sequential_groups(pred, ref)
        got = sorted(
            (list(g.ref_labels), list(g.pred_labels), g.intersection, g.union) for g in group_lesions(pred, ref)
        )
        assert got == expected
        merged += any(len(members) > 1 for members, *_ in expected)
    assert merged > 20  # the random cases do exercise merging
