"""Cross-validation of a folder of fold runs: every case predicted exactly once, by the fold that did not
train on it, on its own scan grid; per fold and pooled summaries from the per-case table."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medseg.cli import main
from medseg.errors import DataError
from medseg.training.crossval import out_of_fold_cases


@pytest.fixture(scope="module")
def crossval_run(fold_runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("cv") / "liver"
    shutil.copytree(fold_runs, root)
    assert main(["crossval", str(root), "--device", "cpu", "--mode", "full", "--no-progress"]) == 0
    return root


def test_out_of_fold_predictions_cover_every_case_once(crossval_run, tiny_dataset):
    out = crossval_run / "crossval"
    per_case = pd.read_csv(out / "per_case.csv", dtype={"case": str})
    cases = sorted(p.name.split(".")[0].removeprefix("volume-") for p in tiny_dataset.glob("volume-*.nii*"))
    assert sorted(per_case["case"]) == cases  # each case exactly once
    for k in (0, 1):
        split = json.loads((crossval_run / f"fold{k}" / "folds.json").read_text())["folds"]
        fold_cases = sorted(per_case.loc[per_case["fold"] == k, "case"])
        assert fold_cases == sorted(split[k]["val"])  # predicted by the fold that held it out
        assert not set(fold_cases) & set(split[k]["train"])
    for case in cases:  # on the scan's own grid
        pred = nib.load(out / "predictions" / f"{case}_seg.nii.gz")
        scan = nib.load(next(tiny_dataset.glob(f"volume-{case}.nii*")))
        assert pred.shape == scan.shape and np.allclose(pred.affine, scan.affine)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and set(summary["folds"]) == {"0", "1"}
    pooled = summary["dice"]["pooled"]
    assert pooled["cases"] == 4
    assert pooled["liver_dice_mean"] == pytest.approx(per_case["liver_dice"].mean())
    inter, both = per_case["tumor_intersection_voxels"].sum(), (per_case["tumor_pred_voxels"].sum()
                                                                 + per_case["tumor_ref_voxels"].sum())  # fmt: skip
    assert pooled["tumor_dice_global"] == pytest.approx(2 * inter / both if both else float("nan"), nan_ok=True)
    fold0 = per_case[per_case["fold"] == 0]
    assert summary["dice"]["fold0"]["liver_dice_mean"] == pytest.approx(fold0["liver_dice"].mean())
    assert (out / "folds.png").stat().st_size > 1000
    choice = json.loads((crossval_run / "postprocessing.json").read_text())
    assert choice["cases"] == 4 and set(choice["chosen"]) - {"crf"} == {
        "keep_largest_liver", "tumor_inside_liver_dilation_mm", "min_lesion_volume_mm3"}  # fmt: skip
    assert choice["steps"][0]["step"] == "crf"  # the CRF is a candidate by default, decided first


@pytest.mark.slow  # ~1 min: network passes and the CRF on 48x48x21 voxels at 8 mm (a 42M-cell grid)
def test_the_crf_candidate_refines_each_out_of_fold_case(crossval_run):
    """Predictor.predict_with_crf, what crossval runs per case: the raw labels equal the fold predictor's without
    post-processing, the refined ones refine_labels on the full scan-grid probabilities (one network pass,
    probabilities only in the box); crossval wrote both maps for every case."""
    from medseg.inference.crf import CrfSettings, refine_labels
    from medseg.inference.ensemble import fold_checkpoint
    from medseg.inference.predictor import InferenceSettings, Predictor
    from medseg.io import read_volume
    from medseg.training.crossval import NO_POSTPROCESSING

    settings = InferenceSettings(mode="full", runtime="torch", precision="float32", postprocessing=NO_POSTPROCESSING)
    parts = out_of_fold_cases(crossval_run)
    predictor = Predictor.from_run(fold_checkpoint(parts[0].run), device="cpu", settings=settings)
    volume = read_volume(parts[0].cases[0].image)
    raw, refined, stats = predictor.predict_with_crf(volume, CrfSettings())
    assert stats["warnings"] == predictor.predict(volume)[1]["warnings"]  # the scan checks ran, as in predict
    np.testing.assert_array_equal(raw.array, predictor(volume).array)
    probabilities = predictor.predict_probabilities(volume).array
    expected = refine_labels(raw.array, probabilities, volume.array, spacing_mm=volume.spacing_mm,
                             settings=CrfSettings())  # fmt: skip
    np.testing.assert_array_equal(refined.array, expected)
    assert refined.affine.tolist() == volume.affine.tolist()
    for case in (c for part in parts for c in part.cases):
        name = f"{case.case_id}_seg.nii.gz"
        written = [read_volume(crossval_run / "crossval" / d / name) for d in ("predictions", "predictions_crf")]
        assert written[0].shape == written[1].shape == read_volume(case.image).shape


@pytest.mark.slow  # ~1 min: network passes and the CRF on 48x48x21 voxels at 8 mm (a 42M-cell grid)
def test_predict_applies_a_crf_chosen_on_crossval(crossval_run, tiny_dataset, tmp_path):
    """A postprocessing.json whose choice holds ``"crf"``: ``medseg predict --model RUNS`` refines the fold
    ensemble's probabilities with it, then applies the other chosen steps."""
    from medseg.inference.crf import CrfSettings, refine_labels
    from medseg.inference.postprocess import PostprocessConfig, postprocess_labels
    from medseg.inference.predictor import Predictor
    from medseg.io import read_volume

    root = tmp_path / "liver"
    for k in (0, 1):
        shutil.copytree(crossval_run / f"fold{k}", root / f"fold{k}")
    crf = CrfSettings(iterations=3)
    chosen = PostprocessConfig(keep_largest_liver=True, tumor_inside_liver_dilation_mm=None, min_lesion_volume_mm3=0.0,
                               crf=crf)  # fmt: skip
    (root / "postprocessing.json").write_text(json.dumps({"chosen": chosen.to_dict()}))
    scan = next(tiny_dataset.glob("volume-*.nii*"))
    out = tmp_path / "out"
    assert main(["predict", "--model", str(root), str(scan), "--out", str(out), "--device", "cpu", "--no-preview",
                 "--no-volumes", "--mode", "full", "--runtime", "torch"]) == 0  # fmt: skip
    predictor = Predictor.from_run(root, device="cpu").with_settings(mode="full", runtime="torch")
    assert predictor.postprocessing == chosen
    volume = read_volume(scan)
    probabilities = predictor.predict_probabilities(volume).array
    refined = refine_labels(probabilities.argmax(0).astype(np.uint8), probabilities, volume.array,
                            spacing_mm=volume.spacing_mm, settings=crf)  # fmt: skip
    expected = postprocess_labels(refined, spacing_mm=volume.spacing_mm, config=chosen, affine=volume.affine)
    written = next(out.glob("*_seg.nii.gz"))
    np.testing.assert_array_equal(read_volume(written).array, expected)


def test_a_case_in_two_validation_folds_is_refused(crossval_run, tmp_path):
    root = tmp_path / "liver"
    shutil.copytree(crossval_run / "fold0", root / "fold0")
    shutil.copytree(crossval_run / "fold1", root / "fold1")
    record = json.loads((root / "fold1" / "folds.json").read_text())
    record["fold"] = 0  # fold1's run claims to be fold 0 as well
    (root / "fold1" / "folds.json").write_text(json.dumps(record))
    with pytest.raises(DataError, match="validation case of folds 0 and 0"):
        out_of_fold_cases(root)


def test_every_json_crossval_writes_is_strict(crossval_run):
    """No ``NaN`` token in any JSON of a cross-validation (issue #28): a strict reader parses them all."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    files = sorted(crossval_run.rglob("*.json"))
    assert any(p.name == "postprocessing.json" for p in files) and any(p.name == "summary.json" for p in files)
    for path in files:
        json.loads(path.read_text(), parse_constant=refuse)


def test_dice_table_reads_the_lits2017_scorers_columns():
    """``--protocol lits2017``: mean of its per-case Dice and global Dice 2 sum(I) / sum(S) (S = |pred| + |ref|),
    hand computed."""
    from medseg.training.crossval import dice_table

    per_case = pd.DataFrame({"case": ["a", "b", "c"], "fold": [0, 0, 1], "liver_dice": [0.8, 1.0, 0.5],
                             "lesion_dice_per_case": [0.0, 1.0, 0.25], "liver_I": [40, 10, 5], "liver_S": [100, 20, 20],
                             "lesion_I": [0, 3, 1], "lesion_S": [4, 6, 8]})  # fmt: skip
    table = dice_table(per_case)
    assert table["fold0"] == {"cases": 2, "liver_dice_mean": 0.9, "liver_dice_global": 100 / 120,
                              "tumor_dice_mean": 0.5, "tumor_dice_global": 0.6}  # fmt: skip
    assert table["pooled"]["liver_dice_global"] == pytest.approx(110 / 140)
    assert table["pooled"]["tumor_dice_global"] == pytest.approx(8 / 18)
    assert table["fold1"]["tumor_dice_mean"] == 0.25
