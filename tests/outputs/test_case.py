"""Per-case outputs of predict (no network): formats, SEG failures falling back to the NIfTI, tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from medseg.inference.batch import CaseOutcome
from medseg.io import read_volume, write_dicom_series
from medseg.outputs.case import OutputSettings, PredictOutputs, wants_seg
from medseg.outputs.manifest import RunManifest


@pytest.mark.parametrize(("fmt", "dicom", "expected"), [
    ("auto", True, True), ("auto", False, False), ("nifti", True, False), ("dicom-seg", True, True),
    ("both", False, True)])
def test_wants_seg(fmt, dicom, expected):
    assert wants_seg(fmt, dicom) is expected


def test_unknown_format():
    with pytest.raises(ValueError, match="format"):
        OutputSettings(format="png")


@pytest.fixture()
def dicom_case(tmp_path, tiny_case):
    folder = write_dicom_series(tiny_case.image, tmp_path / "series")
    scan = read_volume(folder)
    return folder, scan, scan.with_array(tiny_case.label.array.astype(np.uint8))


def _run(tmp_path, settings, case_id, source, scan, labels):
    out = tmp_path / "out"
    manifest = RunManifest.start(out, command="predict")
    writer = PredictOutputs(out, settings, manifest)
    files = writer.write_case(case_id, source, scan, labels, {"warnings": ["spacing far from the plan"]})
    writer.case_done(CaseOutcome(case_id, str(source), "ok", output=str(out / f"{case_id}_seg.nii.gz"),
                                 seconds=1.0, timings_s={"read": 0.1, "predict": 0.9}))
    return out, files, json.loads((out / "run.json").read_text())


def test_dicom_seg_only_and_nothing_found(tmp_path, dicom_case):
    folder, scan, labels = dicom_case
    out, files, run = _run(tmp_path, OutputSettings(format="dicom-seg", preview=False), "c", folder, scan, labels)
    assert not files.write_label_map and (out / "c_seg.dcm").is_file()
    assert run["cases"][0]["warnings"] == ["spacing far from the plan"]
    empty = scan.with_array(np.zeros(scan.shape, np.uint8))
    out, files, run = _run(tmp_path / "2", OutputSettings(format="dicom-seg", preview=False), "e", folder, scan, empty)
    assert files.write_label_map and not (out / "e_seg.dcm").exists()  # no SEG: the NIfTI instead
    assert files.warnings[1:] == ["nothing segmented: no DICOM SEG written",
                                  "no DICOM SEG: the NIfTI label map was written instead"]
    row = pd.read_csv(out / "volumes.csv").iloc[0]
    assert row["liver_ml"] == 0 and "nothing segmented" in row["warnings"]


def test_nifti_scan_asked_for_a_seg_keeps_its_nifti(tmp_path, tiny_case):
    scan = tiny_case.image.with_array(tiny_case.image.array, format="nifti")
    out, files, run = _run(tmp_path, OutputSettings(format="both"), "n", tmp_path / "scan.nii.gz", scan,
                           tiny_case.label)
    assert files.write_label_map and any("not a DICOM input" in w for w in files.warnings)
    case = run["cases"][0]
    assert {"read", "predict", "volumes", "dicom_seg", "preview"} == set(case["timings_s"])
    assert sorted(p.rsplit("/", 1)[-1] for p in case["outputs"]) == ["n_preview.png", "n_seg.nii.gz", "n_volumes.json"]
    lesions = pd.read_csv(out / "lesions.csv", dtype={"case": str})
    report = json.loads((out / "n_volumes.json").read_text())
    assert len(lesions) == report["lesion_count"] == tiny_case.info["lesion_count"]
    assert report["warnings"] == files.warnings


def test_resumed_case_keeps_its_table_rows(tmp_path, tiny_case):
    scan = tiny_case.image.with_array(tiny_case.image.array, format="nifti")
    out, _, _ = _run(tmp_path, OutputSettings(format="nifti", preview=False), "a", tmp_path / "a.nii.gz", scan,
                     tiny_case.label)
    settings = OutputSettings(format="nifti", preview=False)
    writer = PredictOutputs(out, settings, RunManifest.start(out, command="predict"))
    writer.case_done(CaseOutcome("a", "a.nii.gz", "skipped", output=str(out / "a_seg.nii.gz")))
    table = pd.read_csv(out / "volumes.csv", dtype={"case": str})
    assert table["case"].tolist() == ["a"] and table.loc[0, "warnings"] == "spacing far from the plan"
    assert json.loads((out / "run.json").read_text())["cases"][0]["status"] == "skipped"


def test_two_predicts_into_one_folder_keep_each_others_cases(tmp_path, tiny_case):
    """Issue #29.6: two `medseg predict` into one folder ended with only the second run's cases in
    volumes.csv, lesions.csv and run.json; the tables are rebuilt from every <case>_volumes.json."""
    from medseg.outputs.case import rebuild_cohort_tables

    scan = tiny_case.image.with_array(tiny_case.image.array, format="nifti")
    out = tmp_path / "out"
    settings = OutputSettings(format="nifti", preview=False)
    first = PredictOutputs(out, settings, RunManifest.start(out, command="predict", shared=True))
    second = PredictOutputs(out, settings, RunManifest.start(out, command="predict", shared=True))
    empty = scan.with_array(np.zeros(scan.shape, np.uint8))
    for writer, case, labels in ((first, "a", tiny_case.label), (second, "b", empty), (first, "c", tiny_case.label)):
        writer.write_case(case, tmp_path / f"{case}.nii.gz", scan, labels, {})
        writer.case_done(CaseOutcome(case, f"{case}.nii.gz", "ok", output=str(out / f"{case}_seg.nii.gz")))
    table = pd.read_csv(out / "volumes.csv", dtype={"case": str})
    assert table["case"].tolist() == ["a", "b", "c"]
    lesions = pd.read_csv(out / "lesions.csv", dtype={"case": str})
    count = tiny_case.info["lesion_count"]
    assert lesions["case"].tolist() == ["a"] * count + ["c"] * count
    assert table.set_index("case").loc["b", "liver_ml"] == 0
    assert sorted(c["case_id"] for c in json.loads((out / "run.json").read_text())["cases"]) == ["a", "b", "c"]
    (out / "c_volumes.json").unlink()  # the per-case files are the source of truth
    rebuild_cohort_tables(out)
    assert pd.read_csv(out / "volumes.csv", dtype={"case": str})["case"].tolist() == ["a", "b"]
