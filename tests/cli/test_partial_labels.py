"""Partial annotations on the command line (issue #30): ``--ignore-label`` on ``check`` and ``evaluate``,
and the ``"ignore"`` label of a ``dataset.json``."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medseg.cli import main

IGNORE = 3
CASES = ("0", "1")


def _save(path, array, affine):
    nib.save(nib.Nifti1Image(array.astype(np.uint8), affine), path)


@pytest.fixture
def sparse_lits(tiny_dataset, tmp_path):
    """Two phantom cases in the LiTS layout whose labels are annotated on every third axial slice only."""
    root = tmp_path / "sparse"
    root.mkdir()
    for case in CASES:
        shutil.copy(tiny_dataset / f"volume-{case}.nii.gz", root / f"volume-{case}.nii.gz")
        img = nib.load(tiny_dataset / f"segmentation-{case}.nii.gz")
        data = np.asarray(img.dataobj).copy()
        keep = np.zeros(data.shape, bool)
        keep[..., ::3] = True
        _save(root / f"segmentation-{case}.nii.gz", np.where(keep, data, IGNORE), img.affine)
    return root


def test_check_refuses_an_undeclared_ignore_value_and_accepts_a_declared_one(sparse_lits, capsys):
    assert main(["check", str(sparse_lits), "--workers", "1"]) == 2
    out = capsys.readouterr().out
    assert "label values 3 outside {0, 1, 2}" in out and "--ignore-label" in out
    assert main(["check", str(sparse_lits), "--workers", "1", "--ignore-label", "3"]) == 0
    assert "label_values" not in capsys.readouterr().out
    assert main(["check", str(sparse_lits), "--workers", "1", "--ignore-label", "4"]) == 2  # 3 is still undeclared


def test_dataset_json_declares_the_ignore_label(sparse_lits, tmp_path, capsys):
    root = tmp_path / "decathlon"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for case in CASES:
        shutil.copy(sparse_lits / f"volume-{case}.nii.gz", root / "imagesTr" / f"liver_{case}_0000.nii.gz")
        shutil.copy(sparse_lits / f"segmentation-{case}.nii.gz", root / "labelsTr" / f"liver_{case}.nii.gz")
    meta = {"labels": {"background": 0, "liver": 1, "tumor": 2}}
    (root / "dataset.json").write_text(json.dumps(meta))
    assert main(["check", str(root), "--workers", "1"]) == 2
    capsys.readouterr()
    for labels in ({"background": 0, "liver": 1, "tumor": 2, "ignore": 3},  # nnU-Net v2
                   {"0": "background", "1": "liver", "2": "tumor", "3": "ignore"}):  # Decathlon
        (root / "dataset.json").write_text(json.dumps({"labels": labels}))
        assert main(["check", str(root), "--workers", "1"]) == 0
    assert main(["check", str(root), "--workers", "1", "--ignore-label", "5"]) == 2
    assert "differs from the ignore label 3 that dataset.json declares" in capsys.readouterr().err


def test_evaluate_scores_a_prediction_wrong_only_on_ignored_voxels_as_perfect(sparse_lits, tiny_dataset, tmp_path,
                                                                            capsys):
    pred = tmp_path / "pred"
    pred.mkdir()
    rng = np.random.default_rng(0)
    for case in CASES:
        dense = nib.load(tiny_dataset / f"segmentation-{case}.nii.gz")
        sparse = np.asarray(nib.load(sparse_lits / f"segmentation-{case}.nii.gz").dataobj)
        wrong = np.asarray(dense.dataobj).copy()
        hidden = sparse == IGNORE
        wrong[hidden] = rng.integers(0, 3, int(hidden.sum()))  # anything where nobody annotated
        assert (wrong != np.asarray(dense.dataobj)).sum() > 100
        _save(pred / f"{case}_seg.nii.gz", wrong, dense.affine)
    out = tmp_path / "eval"
    argv = ["evaluate", "--pred", str(pred), "--ref", str(sparse_lits), "--out", str(out), "--workers", "1",
            "--no-figures"]
    assert main([*argv, "--ignore-label", "3"]) == 0
    table = pd.read_csv(out / "per_case.csv", dtype={"case": str}).set_index("case")
    assert (table["liver_dice"] == 1.0).all() and (table["liver_hd95_mm"] == 0.0).all()
    assert (table["tumor_dice"] == 1.0).all() and (table["lesions_fp"] == 0).all() and (table["lesions_fn"] == 0).all()
    assert (table["pixel_accuracy"] == 1.0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"]["reference"]["ignore"] == IGNORE
    # undeclared, the sparse references are bad label maps: no case can be scored
    assert main([*argv[:6], str(tmp_path / "eval2"), *argv[7:]]) == 2
    assert "outside {0, 1, 2}" in capsys.readouterr().err


@pytest.mark.parametrize("scheme", ["slices", "scribbles", "patches", "boxes"])
def test_sparsify_writes_a_checked_decathlon_set_and_reports_the_fraction(tiny_dataset, tmp_path, capsys, scheme):
    out = tmp_path / scheme
    assert main(["sparsify", str(tiny_dataset), str(out), "--scheme", scheme, "--fraction", "0.2", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"]["ignore"] == IGNORE and meta["numTraining"] == 4
    record = meta["sparsify"]
    annotated = total = 0
    for case in ("0", "1", "2", "3"):
        sparse = np.asarray(nib.load(out / "labelsTr" / f"{case}.nii.gz").dataobj)
        dense = np.asarray(nib.load(tiny_dataset / f"segmentation-{case}.nii.gz").dataobj)
        keep = sparse != IGNORE
        if scheme != "boxes":  # boxes turn tumors into cores: checked in tests/data/test_boxes.py
            np.testing.assert_array_equal(sparse[keep], dense[keep])
        assert record["cases"][case] == pytest.approx(keep.mean())
        annotated, total = annotated + keep.sum(), total + keep.size
    assert record["annotated_fraction"] == pytest.approx(annotated / total)
    assert f"{100 * annotated / total:.2f}% of the voxels annotated" in printed
    expected = {"slices": (0.15, 0.25), "scribbles": (0.002, 0.05), "patches": (0.2, 0.3), "boxes": (0.98, 1.0)}
    low, high = expected[scheme]
    assert low <= record["annotated_fraction"] <= high
    assert main(["check", str(out), "--workers", "1"]) == 0  # dataset.json declares the ignore label
    assert main(["sparsify", str(tiny_dataset), str(out), "--scheme", scheme]) == 2  # OUT not empty


def test_train_on_a_sparsified_set_with_the_ignore_label(tiny_dataset, tmp_path, capsys):
    from ..conftest import FOLD_TINY

    data = tmp_path / "sparse"
    assert main(["sparsify", str(tiny_dataset), str(data), "--scheme", "slices", "--fraction", "0.5"]) == 0
    loss = "loss=[{name: dice_ce}, {name: boundary, weight: 0.1}]"  # a distance loss: its maps with the ignore value
    sets = [a for s in [*FOLD_TINY, f"data.cache_dir={tmp_path / 'cache'}", loss] for a in ("--set", s)]
    common = ["train", "liver", "--data", str(data), "--device", "cpu", "--epochs", "1", "--no-progress", *sets]
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "undeclared")]) == 2
    assert "dataset.json declares the ignore label 3" in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "run"), "--set", "data.ignore_label=3"]) == 0
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert np.isfinite(metrics["train_loss"]).all() and metrics["val_dice_liver"].between(0, 1).all()
