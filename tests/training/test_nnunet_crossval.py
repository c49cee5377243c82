"""``medseg crossval`` on an nnU-Net v2 trained-model folder: nnU-Net's own ``fold_K/validation`` predictions
evaluated against the raw data set's references, nothing written inside the folder.

Fast tests: a seeded nnU-Net folder (tests/interop/nnunet) whose validation outputs are constructed from the
references (Dice known exactly). Slow tests: a folder nnU-Net 2.8.1 trained and validated itself
(``nnUNetv2_train ... --val``), medseg's Dice against the Dice nnU-Net wrote into its ``summary.json``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medseg.cli import main
from medseg.data import make_phantom
from medseg.io import read_volume
from medseg.io.nifti import write_nifti
from medseg.io.volume import Volume


def tree_state(root: Path) -> dict[str, tuple[str, int]]:
    """Every file below ``root``: relative path -> (SHA-256, mtime in ns); and every folder (empty ones too)."""
    state = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        state[key] = ("dir", 0) if path.is_dir() else (hashlib.sha256(path.read_bytes()).hexdigest(),
                                                        path.stat().st_mtime_ns)  # fmt: skip
    return state


def _raw_dataset(root: Path, cases: int = 3) -> Path:
    """nnU-Net's raw layout: ``imagesTr/case_XXX_0000.nii.gz``, ``labelsTr/case_XXX.nii.gz``, dataset.json."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for index in range(cases):
        case = make_phantom(size="tiny", seed=1, index=index)
        write_nifti(case.image, root / "imagesTr" / f"case_{index:03d}_0000.nii.gz")
        write_nifti(case.label, root / "labelsTr" / f"case_{index:03d}.nii.gz", label=True)
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "file_ending": ".nii.gz",
                                                   "labels": {"background": 0, "liver": 1, "tumor": 2},
                                                   "numTraining": cases}))  # fmt: skip
    return root


def _validation(folder: Path, fold: int, case_id: str, labels: np.ndarray, like: Volume) -> Path:
    path = folder / f"fold_{fold}" / "validation" / f"{case_id}.nii.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_nifti(Volume(labels.astype(np.uint8), like.affine), path, label=True)
    return path


@pytest.fixture
def constructed(tmp_path):
    """A seeded nnU-Net folder whose fold_0 validated case_000 exactly, fold_1 validated case_001 with its
    tumor labelled liver, and fold_2 has no validation/ (plus the raw data set)."""
    from ..interop.nnunet.conftest import write_seeded_folder

    folder = write_seeded_folder(tmp_path / "results")
    data = _raw_dataset(tmp_path / "raw")
    refs = {k: read_volume(data / "labelsTr" / f"case_00{k}.nii.gz") for k in range(2)}
    _validation(folder, 0, "case_000", np.asarray(refs[0].array), refs[0])
    _validation(folder, 1, "case_001", np.where(np.asarray(refs[1].array) == 2, 1, refs[1].array), refs[1])
    (folder / "fold_2").mkdir()
    return folder, data, refs


def _crossval(folder, *args) -> int:
    return main(["crossval", str(folder), "--no-figures", *args])


def test_constructed_validation_outputs_score_as_computed(constructed, tmp_path, capsys):
    folder, data, _ = constructed
    before = tree_state(folder.parent)
    out = tmp_path / "report"
    assert _crossval(folder, "--data", str(data), "--out", str(out)) == 0
    err = capsys.readouterr().err
    assert "fold_2 has no validation/" in err and "--val" in err  # skipped with a line
    assert "the dense CRF is not a post-processing candidate here" in err  # label maps only: no probabilities
    per_case = pd.read_csv(out / "per_case.csv").set_index("case")
    assert per_case["fold"].to_dict() == {"case_000": 0, "case_001": 1}
    assert per_case.loc["case_000", "liver_dice"] == 1.0 and per_case.loc["case_000", "tumor_dice"] == 1.0
    # tumor relabelled liver: the liver region (labels 1 and 2) is unchanged, the tumor is gone
    assert per_case.loc["case_001", "liver_dice"] == 1.0 and per_case.loc["case_001", "tumor_dice"] == 0.0
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["folds"]) == ["0", "1"] and summary["fold_of_case"] == {"case_000": 0, "case_001": 1}
    assert summary["dice"]["pooled"]["tumor_dice_mean"] == 0.5
    assert summary["source"]["labels"] == {"liver": [1], "tumor": [2]}
    chosen = json.loads((out / "postprocessing.json").read_text())
    assert chosen["cases"] == 2 and set(chosen["chosen"]) >= {"keep_largest_liver", "min_lesion_volume_mm3"}
    assert "crf" not in chosen["chosen"] and chosen["steps"][0]["step"] == "keep_largest_liver"
    assert tree_state(folder.parent) == before  # nothing inside the nnU-Net folder written or touched


def test_labels_map_predictions_and_references_alike(constructed, tmp_path):
    folder, data, refs = constructed
    out = tmp_path / "report"
    assert _crossval(folder, "--data", str(data), "--out", str(out), "--labels", "liver=1",
                     "--no-postprocessing") == 0
    per_case = pd.read_csv(out / "per_case.csv").set_index("case")
    ref = np.asarray(refs[1].array)
    liver, pred = ref == 1, ref >= 1  # liver = label 1 only; the prediction's tumor voxels were relabelled 1
    expected = 2 * np.count_nonzero(liver & pred) / (np.count_nonzero(liver) + np.count_nonzero(pred))
    counts = per_case.loc["case_001", ["liver_pred_voxels", "liver_ref_voxels", "liver_intersection_voxels"]]
    assert counts.tolist() == [np.count_nonzero(pred), np.count_nonzero(liver), np.count_nonzero(liver & pred)]
    assert per_case.loc["case_001", "liver_dice"] == pytest.approx(expected, abs=1e-9)  # per_case.csv: 10 digits
    assert per_case.loc["case_000", "liver_dice"] == 1.0
    assert not (out / "postprocessing.json").exists()


@pytest.mark.parametrize(("change", "message"), [
    ("no_out", "--out DIR is required for an nnU-Net folder"),
    ("out_inside", "--out is inside the nnU-Net folder"),
    ("no_data", "--data DIR is required for an nnU-Net folder"),
    ("no_reference", "validation case case_001 has no reference label map"),
    ("no_validation", "no validation outputs"),
    ("unknown_class", "--labels names 7, which is not one of the model's classes"),
    ("fold_missing", "--folds: the nnU-Net folder has no fold_5"),
])
def test_refusals_are_one_line_and_write_nothing(constructed, tmp_path, capsys, change, message):
    folder, data, _ = constructed
    out = tmp_path / "report"
    args = ["--data", str(data), "--out", str(out)]
    if change == "no_out":
        args = args[:2]
    elif change == "out_inside":
        args[3] = str(folder / "report")
    elif change == "no_data":
        args = args[2:]
    elif change == "no_reference":
        (data / "labelsTr" / "case_001.nii.gz").unlink()
    elif change == "no_validation":
        for k in (0, 1):
            shutil.rmtree(folder / f"fold_{k}" / "validation")
    elif change == "unknown_class":
        args += ["--labels", "liver=7"]
    elif change == "fold_missing":
        args += ["--folds", "5"]
    before = tree_state(folder.parent)
    assert _crossval(folder, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)
    assert not out.exists() and tree_state(folder.parent) == before


def test_a_model_with_other_classes_needs_labels(tmp_path, capsys):
    from ..interop.nnunet.conftest import SEEDED_DATASET, write_seeded_folder

    dataset = {**SEEDED_DATASET, "labels": {"background": 0, "spleen": 1, "liver": 2}}
    folder = write_seeded_folder(tmp_path / "results", dataset=dataset)
    (folder / "fold_0" / "validation").mkdir()
    assert _crossval(folder, "--data", str(tmp_path), "--out", str(tmp_path / "out")) == 2
    assert "not LiTS' (1 spleen, 2 liver): say which are liver and tumor with --labels" in capsys.readouterr().err


def test_out_and_labels_are_refused_for_medseg_fold_runs(tmp_path, capsys):
    assert main(["crossval", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "--out is for nnU-Net folders" in capsys.readouterr().err


# --- a folder nnU-Net trained and validated itself -------------------------------------------------------------


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    """tests/interop/nnunet's folder (nnU-Net's planner, preprocessor and trainer, fold 0 validating case_003)
    after ``nnUNetv2_train 501 3d_fullres 0 --val``: ``(folder, raw data set, nnU-Net's summary.json)``."""
    pytest.importorskip("nnunetv2")
    from ..interop.nnunet.conftest import _run

    root = tmp_path_factory.mktemp("nnunet_val")
    _run(["build", str(root)], root)
    _run(["validate", str(root)], root)
    folder = root / "results" / "Dataset501_Phantom" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    summary = json.loads((folder / "fold_0" / "validation" / "summary.json").read_text())
    return folder, root / "raw" / "Dataset501_Phantom", summary


def _nnunet_case_metrics(summary: dict) -> dict[str, dict]:
    return {Path(c["prediction_file"]).name.removesuffix(".nii.gz"): c["metrics"] for c in summary["metric_per_case"]}


@pytest.mark.slow  # nnU-Net plans, preprocesses, trains 60 iterations and validates: about 45 s on one core
def test_dice_equals_nnunets_own_validation_dice(validated, tmp_path):
    """nnU-Net scores each label on its own: "1" is liver parenchyma without tumor, "2" tumor. medseg's tumor
    region is label 2 (equal), its liver region labels 1 and 2 (not nnU-Net's "1"); ``--labels liver=1``
    makes medseg's liver nnU-Net's label 1 exactly."""
    folder, data, summary = validated
    before = tree_state(folder)
    nnunet = _nnunet_case_metrics(summary)
    assert list(nnunet) == ["case_003"]
    lits, label1 = tmp_path / "lits", tmp_path / "label1"
    assert _crossval(folder, "--data", str(data), "--out", str(lits)) == 0
    assert _crossval(folder, "--data", str(data), "--out", str(label1), "--labels", "liver=1",
                     "--no-postprocessing") == 0
    row = pd.read_csv(lits / "per_case.csv").set_index("case").loc["case_003"]
    tumor = nnunet["case_003"]["2"]
    assert row["fold"] == 0
    assert (row["tumor_pred_voxels"], row["tumor_ref_voxels"], row["tumor_intersection_voxels"]) == (
        tumor["n_pred"], tumor["n_ref"], tumor["TP"])
    if tumor["n_pred"] + tumor["n_ref"]:
        assert row["tumor_dice"] == pytest.approx(tumor["Dice"], abs=1e-9)
    liver = nnunet["case_003"]["1"]
    row1 = pd.read_csv(label1 / "per_case.csv").set_index("case").loc["case_003"]
    assert (row1["liver_pred_voxels"], row1["liver_ref_voxels"], row1["liver_intersection_voxels"]) == (
        liver["n_pred"], liver["n_ref"], liver["TP"])
    assert row1["liver_dice"] == pytest.approx(liver["Dice"], abs=1e-9)
    assert liver["TP"] > 0  # a trained model, not an empty map
    assert tree_state(folder) == before


@pytest.mark.slow
def test_lits2017_protocol_and_the_choice_in_predict(validated, tmp_path):
    folder, data, _ = validated
    medseg_out, lits_out = tmp_path / "medseg", tmp_path / "lits2017"
    assert _crossval(folder, "--data", str(data), "--out", str(medseg_out)) == 0
    assert _crossval(folder, "--data", str(data), "--out", str(lits_out), "--protocol", "lits2017",
                     "--no-postprocessing") == 0
    lits = pd.read_csv(lits_out / "per_case.csv").set_index("case").loc["case_003"]
    ours = pd.read_csv(medseg_out / "per_case.csv").set_index("case").loc["case_003"]
    assert lits["fold"] == 0 and lits["liver_dice"] == pytest.approx(ours["liver_dice"], abs=1e-9)
    assert json.loads((lits_out / "summary.json").read_text())["pooled"]["protocol"] == "lits2017"
    choice = medseg_out / "postprocessing.json"
    scan = data / "imagesTr" / "case_003_0000.nii.gz"
    assert main(["predict", "--model", str(folder), str(scan), "--out", str(tmp_path / "pred"), "--device", "cpu",
                 "--no-preview", "--postprocessing", str(choice)]) == 0
    run = json.loads((tmp_path / "pred" / "run.json").read_text())
    assert run["pipeline"]["postprocessing"] == json.loads(choice.read_text())["chosen"]
