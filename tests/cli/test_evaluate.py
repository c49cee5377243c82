import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medseg.cli import main


@pytest.fixture
def predictions(tiny_dataset, tmp_path):
    """Perfect predictions for cases 0-2 (case 3 missing), tumor removed in case 1."""
    pred = tmp_path / "pred"
    pred.mkdir()
    for case in ("0", "2"):
        shutil.copy(tiny_dataset / f"segmentation-{case}.nii.gz", pred / f"{case}_seg.nii.gz")
    img = nib.load(tiny_dataset / "segmentation-1.nii.gz")
    data = np.asarray(img.dataobj).copy()
    data[data == 2] = 1
    nib.save(nib.Nifti1Image(data.astype(np.uint8), img.affine), pred / "1_seg.nii.gz")
    return pred


def test_evaluate_writes_contract_and_counts_missing(tiny_dataset, predictions, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["evaluate", "--pred", str(predictions), "--ref", str(tiny_dataset), "--out", str(out), "--workers",
                 "1", "--allow-missing"])  # fmt: skip
    assert code == 0
    table = pd.read_csv(out / "per_case.csv", dtype={"case": str}).set_index("case")
    assert list(table.index) == ["0", "1", "2", "3"]
    for column in ("liver_dice", "tumor_hd95_mm", "lesions_tp", "lesions_fp", "lesions_fn",
                   "tumor_burden_pred_percent"):
        assert column in table.columns
    manifest = {c["case_id"]: c for c in json.loads((tiny_dataset / "manifest.json").read_text())["cases"]}
    assert table.loc["0", "liver_dice"] == 1.0 and table.loc["2", "liver_hd95_mm"] == 0.0
    assert table.loc["3", "liver_dice"] == 0.0 and bool(table.loc["3", "prediction_missing"])
    assert table.loc["1", "lesions_fn"] == manifest["1"]["lesion_count"]
    assert table.loc["1", "tumor_burden_ref_percent"] == pytest.approx(manifest["1"]["tumor_burden_percent"])
    assert table.loc["0", "liver_ref_volume_ml"] == pytest.approx(manifest["0"]["liver_ml"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["missing"] == ["3"]
    assert summary["regions"]["liver"]["hd95_mm"]["n_nan"] == 1  # the missing case
    assert (out / "boxplots.png").stat().st_size > 0 and (out / "volumes.png").stat().st_size > 0
    assert "counted as empty: 3" in capsys.readouterr().out


def test_a_missing_prediction_is_an_error_before_any_metric(tiny_dataset, predictions, tmp_path, capsys):
    """Case 3 has no prediction: never a silent Dice 0 (issue #28); one line listing the ids, exit 2."""
    out = tmp_path / "eval"
    code = main(["evaluate", "--pred", str(predictions), "--ref", str(tiny_dataset), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (f"medseg evaluate: error: {predictions}: no prediction for 1 of 4 reference case(s): 3 "
                   "(misnamed? --allow-missing scores them as empty predictions)")
    assert not (out / "per_case.csv").exists() and not (out / "summary.json").exists()


def test_an_empty_prediction_folder_is_always_an_error(tiny_dataset, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for flags in ([], ["--allow-missing"]):
        assert main(["evaluate", "--pred", str(empty), "--ref", str(tiny_dataset), "--out", str(tmp_path / "e"),
                     *flags]) == 2  # fmt: skip
        assert capsys.readouterr().err.strip() == (f"medseg evaluate: error: {empty}: no predicted label maps "
                                                   "(*_seg.nii.gz, *.nii, DICOM SEG *_seg.dcm) found")


def test_evaluate_geometry_mismatch_is_one_clear_line(tiny_dataset, predictions, tmp_path, capsys):
    """A prediction on another grid is skipped with one line naming both files; the rest is scored, exit 2."""
    img = nib.load(tiny_dataset / "segmentation-0.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, :-1], img.affine), predictions / "0_seg.nii.gz")
    code = main(["evaluate", "--pred", str(predictions), "--ref", str(tiny_dataset), "--out", str(tmp_path / "e"),
                 "--allow-missing"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "case 0" in err and "0_seg.nii.gz" in err and "segmentation-0.nii.gz" in err and "shape" in err
    assert "np.float64" not in err
    per_case = pd.read_csv(tmp_path / "e" / "per_case.csv", dtype={"case": str})
    assert "0" not in set(per_case["case"]) and len(per_case) == len(list(tiny_dataset.glob("segmentation-*"))) - 1
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert [c["case"] for c in summary["failed_cases"]] == ["0"]


def test_volumes_command_json(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "v.json"
    seg, scan = tiny_dataset / "segmentation-2.nii.gz", tiny_dataset / "volume-2.nii.gz"
    assert main(["volumes", str(seg), "--image", str(scan), "--json", str(out), "--csv", str(tmp_path / "l.csv")]) == 0
    report = json.loads(out.read_text())
    manifest = json.loads((tiny_dataset / "manifest.json").read_text())["cases"][2]
    for key in ("liver_ml", "liver_parenchyma_ml", "tumor_ml", "tumor_burden_percent"):
        assert report[key] == pytest.approx(manifest[key])
    assert len(report["lesions"]) == manifest["lesion_count"]
    for lesion in report["lesions"]:
        assert set(lesion) >= {"volume_ml", "axial_diameter_mm", "max_diameter_mm", "centroid_mm"}
    printed = capsys.readouterr().out
    assert "liver (incl. tumor)" in printed and "RECIST long x short mm" in printed
    first = report["lesions"][0]
    assert f"{first['axial_diameter_mm']:.1f} x {first['short_axis_mm']:.1f}" in printed
    table = pd.read_csv(tmp_path / "l.csv", dtype={"case": str})  # the case first, one value per column
    assert list(table.columns[:3]) == ["case", "lesion", "volume_ml"] and set(table["case"]) == {"2"}
    assert table[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy() == pytest.approx(
        np.round([lesion["centroid_mm"] for lesion in report["lesions"]], 2))


def test_volumes_missing_file(tmp_path, capsys):
    assert main(["volumes", str(tmp_path / "nope.nii.gz")]) == 2
    assert "nope.nii.gz" in capsys.readouterr().err


def test_evaluate_protocol_lits2017_writes_the_scorers_names(tiny_dataset, predictions, tmp_path, capsys):
    out = tmp_path / "lits"
    args = ["evaluate", "--pred", str(predictions), "--ref", str(tiny_dataset), "--out", str(out), "--workers", "1",
            "--allow-missing"]  # fmt: skip
    assert main([*args, "--protocol", "lits2017"]) == 0
    table = pd.read_csv(out / "per_case.csv", dtype={"case": str}).set_index("case")
    scorer = ["liver_dice", "liver_jaccard", "liver_voe", "liver_rvd", "liver_assd", "liver_rmsd", "liver_msd"]
    scorer += ["lesion_dice_per_case", "TP", "FP", "FN", "TP_greater_zero", "tumor_burden_diff"]
    assert set(scorer) <= set(table.columns) and "tumor_hd95_mm" not in table.columns
    manifest = {c["case_id"]: c for c in json.loads((tiny_dataset / "manifest.json").read_text())["cases"]}
    assert table.loc["0", "liver_dice"] == 1.0 and table.loc["0", "liver_msd"] == 0.0
    assert table.loc["3", "liver_assd"] == 9001 and not table.loc["3", "liver_exists"]  # missing: no label 1
    assert table.loc["1", "TP"] == 0 and table.loc["1", "FN"] == table.loc["1", "n_reference"]
    assert table.loc["2", "tumor_burden_diff"] == pytest.approx(0.0)  # a perfect prediction
    assert table.loc["1", "n_reference"] == manifest["1"]["lesion_count"]  # no lesion touches another here
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"] == "lits2017" and summary["config"]["lesion_connectivity"] == 1
    assert list(summary["scores"])[:2] == ["lesion_precision", "lesion_recall"]
    assert {"liver_dice_global", "RMSE_Tumorburden", "MAXERROR_Tumorburden"} <= set(summary["scores"])
    assert summary["scores"]["MAXERROR_Tumorburden"] == pytest.approx(max(table["tumor_burden_diff"]))
    assert not (out / "boxplots.png").exists()
    printed = capsys.readouterr().out
    assert "(protocol lits2017)" in printed and "lesion_precision: " in printed
    medseg_out = tmp_path / "medseg"
    assert main(["evaluate", "--pred", str(predictions), "--ref", str(tiny_dataset), "--out", str(medseg_out),
                 "--allow-missing"]) == 0  # fmt: skip
    assert json.loads((medseg_out / "summary.json").read_text())["protocol"] == "medseg"


def test_evaluate_protocol_lits2017_refuses_medseg_settings(tiny_dataset, predictions, tmp_path, capsys):
    args = ["evaluate", "--pred", str(predictions), "--ref", str(tiny_dataset), "--out", str(tmp_path / "e")]
    assert main([*args, "--protocol", "lits2017", "--connectivity", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--protocol lits2017" in err
    assert not (tmp_path / "e").exists()


def test_evaluate_run_json_and_tumor_free_references(tiny_dataset, predictions, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--pred", str(predictions), "--ref", str(tiny_dataset), "--out", str(out),
                 "--workers", "1", "--no-figures", "--allow-missing"]) == 0
    manifest = {c["case_id"]: c for c in json.loads((tiny_dataset / "manifest.json").read_text())["cases"]}
    with_tumor = sum(1 for c in manifest.values() if c["lesion_count"] > 0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["references"] == {"with_tumor": with_tumor, "without_tumor": len(manifest) - with_tumor}
    assert f"references holding a tumor: {with_tumor} of {len(manifest)}" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "evaluate" and run["status"] == "complete" and run["finished"]
    assert run["settings"]["ref"] == str(tiny_dataset) and run["references"] == summary["references"]
    cases = {c["case_id"]: c for c in run["cases"]}
    assert set(cases) == set(manifest) and cases["3"]["input"] is None  # missing prediction
    assert all(c["status"] == "ok" for c in cases.values())
