"""`evaluate_folders` reports the confusion-matrix metrics, lesion AP and FROC (summary.json, froc.png)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from medseg.evaluation.confusion import confusion_metrics
from medseg.evaluation.runner import evaluate_folders

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


def _save(array, path):
    nib.save(nib.Nifti1Image(np.asarray(array), AFFINE), str(path))


def _case(shift: int):
    """Liver block with two tumors in the reference; the prediction hits the first, misses the second and adds
    a spurious one."""
    ref = np.zeros((24, 20, 8), np.uint8)
    ref[2:20, 2:18, 1:7] = 1
    ref[4:8, 4:8, 2:5] = 2
    ref[12:16, 10:14, 2:5] = 2
    pred = np.zeros_like(ref)
    pred[2 + shift : 20, 2:18, 1:7] = 1
    pred[4:8, 4:8, 2:5] = 2
    pred[15:18, 3:6, 2:4] = 2  # spurious
    return pred, ref


def test_summary_has_pooled_confusion_ap_and_froc(tmp_path):
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    pred_dir.mkdir(), ref_dir.mkdir()
    matrices = []
    for case, shift in (("1", 0), ("2", 3)):
        pred, ref = _case(shift)
        _save(pred, pred_dir / f"{case}_seg.nii.gz")
        _save(ref, ref_dir / f"segmentation-{case}.nii.gz")
        matrices.append(sk_confusion_matrix(ref.ravel(), pred.ravel(), labels=[0, 1, 2]))
    prob = np.zeros((24, 20, 8), np.float32)
    prob[4:8, 4:8, 2:5], prob[15:18, 3:6, 2:4] = 0.9, 0.95  # case 1: the spurious lesion ranks first
    _save(prob, pred_dir / "1_prob_tumor.nii.gz")  # case 2 has none: its lesions get confidence 1

    run = evaluate_folders(pred_dir, ref_dir, tmp_path / "out", workers=1, progress=False)

    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    pooled = summary["confusion"]["pooled"]
    expected = confusion_metrics(sum(matrices))
    assert pooled["matrix"] == sum(matrices).tolist()
    for key in ("pixel_accuracy", "mean_iou", "frequency_weighted_iou", "mean_class_accuracy"):
        assert pooled[key] == pytest.approx(expected[key])
    assert set(pooled["per_class"]) == {"background", "liver", "tumor"}
    per_case_mean = np.mean([confusion_metrics(m)["mean_iou"] for m in matrices])
    assert summary["confusion"]["per_case"]["mean_iou"]["mean"] == pytest.approx(per_case_mean)

    detection = summary["lesion_detection"]
    # ranked: case 2 hit (1.0), case 2 spurious (1.0), case 1 spurious (0.95), case 1 hit (0.9); 4 reference lesions
    # thresholds 1.0: TP 1 FP 1 -> (R 1/4, P 1/2); 0.95: (1/4, 1/3); 0.9: (2/4, 2/4)
    assert detection["average_precision"] == pytest.approx(1 / 4 * 1 / 2 + 1 / 4 * 2 / 4)
    assert (detection["n_pred"], detection["n_ref"], detection["tp"], detection["n_scans"]) == (4, 4, 2, 2)
    assert detection["confidence"] == "max tumor probability where given, else 1"
    assert detection["froc"]["fp_per_scan"] == pytest.approx([0.5, 1.0, 1.0])
    assert (tmp_path / "out" / "froc.png").is_file() and "froc.png" in summary["files"]
    assert run.results[0].row["pixel_accuracy"] == pytest.approx(confusion_metrics(matrices[0])["pixel_accuracy"])


def test_volumes_of_a_tilted_grid_use_the_true_voxel_volume(tmp_path, caplog):
    """Issue #29.3: on a 25° gantry-tilted grid evaluate's volume columns and lesion table are voxels x |det|
    (0.8 x 0.8 x 2.5 x cos 25° mm^3), not the spacings' product (10.3% more); the warning names only the
    surface distances, which still assume orthogonal axes."""
    from medseg.evaluation.case import EvaluationConfig
    from medseg.evaluation.matching import CasePair
    from medseg.evaluation.runner import evaluate_pair

    tilt = np.radians(25.0)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    affine[1:3, 2] = 2.5 * np.sin(tilt), 2.5 * np.cos(tilt)
    ref = np.zeros((20, 20, 10), np.uint8)
    ref[2:12, 2:12, 2:8] = 1
    ref[4:8, 4:8, 3:6] = 2  # one lesion, 48 voxels
    pred = ref.copy()
    pred[10:12, 2:12, 2:8] = 0  # 120 liver voxels fewer
    for name, array in (("ref.nii.gz", ref), ("pred.nii.gz", pred)):
        nib.save(nib.Nifti1Image(array, affine), tmp_path / name)
    with caplog.at_level("WARNING"):
        result = evaluate_pair(CasePair("1", tmp_path / "ref.nii.gz", tmp_path / "pred.nii.gz"), EvaluationConfig())
    voxel_ml = 0.8 * 0.8 * 2.5 * np.cos(tilt) / 1000.0
    assert result.row["liver_ref_volume_ml"] == pytest.approx(600 * voxel_ml)
    assert result.row["liver_pred_volume_ml"] == pytest.approx(480 * voxel_ml)
    assert result.row["tumor_ref_volume_ml"] == pytest.approx(48 * voxel_ml)
    assert result.lesions[0]["ref_volume_ml"] == pytest.approx(48 * voxel_ml)
    assert result.lesions[0]["pred_volume_ml"] == pytest.approx(48 * voxel_ml)
    assert "25.0° from orthogonal" in caplog.text and "surface distances (ASSD, HD95, NSD) assume" in caplog.text
