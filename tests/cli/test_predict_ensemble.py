"""``medseg predict --model <folder of folds> [--folds] --save-probabilities``: the folds' ensemble, uint8
probability and uncertainty maps on the scan's grid, the folds' agreement in the case JSON and volumes.csv."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medseg.cli import main
from medseg.data import make_phantom
from medseg.inference import InferenceSettings, Predictor
from medseg.io import write_volume


def test_predict_with_the_folds_and_save_probabilities(two_fold_runs, tmp_path):
    image = make_phantom(size="tiny", seed=5, index=2).image
    scan = write_volume(image, tmp_path / "case7.nii.gz")
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(two_fold_runs), str(scan), "--out", str(out), "--device", "cpu",
                 "--mode", "full", "--save-probabilities", "--no-preview"]) == 0  # fmt: skip
    ensemble = Predictor.from_run(two_fold_runs, device="cpu", settings=InferenceSettings(mode="full"))
    expected = ensemble.predict_probabilities(image).array
    source = nib.load(scan)
    for name, want in (("prob_liver", expected[1] + expected[2]), ("prob_tumor", expected[2])):
        img = nib.load(out / f"case7_{name}.nii.gz")
        assert img.shape == source.shape and np.allclose(img.affine, source.affine)
        assert img.get_data_dtype() == np.uint8
        np.testing.assert_allclose(img.get_fdata(), want, atol=0.5 / 255 + 1e-5)
    unsure = nib.load(out / "case7_uncertainty.nii.gz").get_fdata()
    assert 0.0 <= unsure.min() and unsure.max() <= 1.0
    report = json.loads((out / "case7_volumes.json").read_text())
    agreement = report["uncertainty"]
    assert agreement["folds"] == 2 and len(agreement["fold_tumor_volume_ml"]) == 2
    assert 0.0 <= agreement["fold_dice_liver"] <= 1.0
    row = pd.read_csv(out / "volumes.csv").iloc[0]
    assert row["folds"] == 2 and row["fold_dice_liver"] == pytest.approx(agreement["fold_dice_liver"], abs=1e-3)
    manifest = json.loads((out / "run.json").read_text())
    assert len(manifest["checkpoints"]) == 2


def test_folds_option_and_missing_fold(two_fold_runs, tmp_path, capsys):
    scan = write_volume(make_phantom(size="tiny", seed=5, index=0).image, tmp_path / "c.nii.gz")
    assert main(["predict", "--model", str(two_fold_runs), "--folds", "1", str(scan), "--out", str(tmp_path / "p"),
                 "--device", "cpu", "--no-preview"]) == 0  # fmt: skip
    report = json.loads((tmp_path / "p" / "c_volumes.json").read_text())
    assert "uncertainty" not in report  # one fold: no agreement to report
    assert main(["predict", "--model", str(two_fold_runs), "--folds", "0,3", str(scan), "--out",
                 str(tmp_path / "q"), "--device", "cpu"]) == 2  # fmt: skip
    assert "fold 3" in capsys.readouterr().err
