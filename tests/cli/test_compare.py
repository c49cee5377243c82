"""``medseg compare``: two prediction sets on the same references, checked against scipy and the per-case tables."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from scipy.stats import wilcoxon

from medseg.cli import main


def _write_set(tiny_dataset, folder, transform):
    folder.mkdir()
    for case in ("0", "1", "2", "3"):
        img = nib.load(tiny_dataset / f"segmentation-{case}.nii.gz")
        data = transform(np.asarray(img.dataobj), int(case))
        nib.save(nib.Nifti1Image(data.astype(np.uint8), img.affine), folder / f"{case}_seg.nii.gz")
    return folder


def _eroded(data: np.ndarray, case: int) -> np.ndarray:
    """A worse "model": the liver eroded by a case-dependent number of voxels (tumor kept)."""
    liver = ndimage.binary_erosion(data > 0, iterations=1 + case % 2)
    return np.where(data == 2, 2, np.where(liver, 1, 0))


def test_compare_two_prediction_sets(tiny_dataset, tmp_path, capsys):
    exact = _write_set(tiny_dataset, tmp_path / "exact", lambda data, case: data)
    eroded = _write_set(tiny_dataset, tmp_path / "eroded", _eroded)
    out = tmp_path / "cmp"
    assert main(["compare", str(exact), str(eroded), "--ref", str(tiny_dataset), "--out", str(out), "--workers",
                 "1", "--seed", "3"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert printed.startswith(f"4 cases compared (exact - eroded) -> {out}")
    a = pd.read_csv(out / "a" / "per_case.csv", dtype={"case": str}).set_index("case")
    b = pd.read_csv(out / "b" / "per_case.csv", dtype={"case": str}).set_index("case")
    table = pd.read_csv(out / "comparison.csv", dtype={"case": str}).set_index("case")
    np.testing.assert_allclose(table["liver_dice_diff"], a["liver_dice"] - b["liver_dice"])
    assert (table["liver_dice_exact"] == 1.0).all() and (table["liver_dice_eroded"] < 1.0).all()
    summary = json.loads((out / "comparison.json").read_text())
    liver = summary["metrics"]["liver_dice"]
    assert liver["mean_difference"] == pytest.approx((a["liver_dice"] - b["liver_dice"]).mean())
    assert liver["wilcoxon_p"] == pytest.approx(wilcoxon(a["liver_dice"], b["liver_dice"]).pvalue)
    assert liver["n"] == 4 and summary["names"] == ["exact", "eroded"] and summary["statistics"]["seed"] == 3
    low, high = liver["ci95"]
    assert 0 < low <= liver["mean_difference"] <= high
    volume = summary["metrics"]["liver_pred_volume_ml"]
    assert volume["mean_difference"] == pytest.approx((a["liver_pred_volume_ml"] - b["liver_pred_volume_ml"]).mean())
    assert (out / "bland_altman.png").stat().st_size > 0
    again = tmp_path / "cmp2"
    assert main(["compare", str(exact), str(eroded), "--ref", str(tiny_dataset), "--out", str(again), "--workers",
                 "1", "--seed", "3", "--no-figures"]) == 0  # fmt: skip
    assert json.loads((again / "comparison.json").read_text())["metrics"] == summary["metrics"]  # seeded


def test_compare_refuses_one_folder_twice(tiny_dataset, tmp_path, capsys):
    exact = _write_set(tiny_dataset, tmp_path / "exact", lambda data, case: data)
    assert main(["compare", str(exact), str(exact), "--ref", str(tiny_dataset), "--out", str(tmp_path / "c"),
                 "--names", "x", "y"]) == 2  # fmt: skip
    assert "PRED_A and PRED_B are the same folder" in capsys.readouterr().err
