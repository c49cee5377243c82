"""`medseg predict` clinical outputs: DICOM SEG, preview, run.json, cohort tables; a killed run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import highdicom as hd
import numpy as np
import pandas as pd
import pydicom
import pytest

from medseg.cli import main
from medseg.data import make_phantom, write_phantom_case
from medseg.evaluation.tables import VOLUME_COLUMNS
from medseg.io import read_volume, write_dicom_series
from medseg.outputs.manifest import file_sha256


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    root = tmp_path_factory.mktemp("scans")
    case = make_phantom(size="tiny", seed=3, index=3)
    write_dicom_series(case.image, root / "patient3")
    write_phantom_case(make_phantom(size="tiny", seed=3, index=1), root / "nifti")
    return root


def _sources(folder):
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.iterdir())]


def test_dicom_input_gets_a_seg_equal_to_the_nifti(trained_run, scans, tmp_path, capsys):
    out = tmp_path / "pred"
    code = main(["predict", "--model", str(trained_run), str(scans / "patient3"), str(scans / "nifti"),
                 "--out", str(out), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["1_preview.png", "1_seg.nii.gz", "1_volumes.json", "lesions.csv", "patient3_preview.png",
                     "patient3_seg.dcm", "patient3_seg.nii.gz", "patient3_volumes.json", "run.json", "volumes.csv"]
    labels = read_volume(out / "patient3_seg.nii.gz").array
    assert np.isin(labels, (1, 2)).any()
    sources = _sources(scans / "patient3")
    seg = hd.seg.segread(out / "patient3_seg.dcm")
    numbers = [int(s.SegmentNumber) for s in seg.SegmentSequence]
    pixels = seg.get_pixels_by_source_instance([str(ds.SOPInstanceUID) for ds in sources], segment_numbers=numbers,
                                               combine_segments=False, ignore_spatial_locations=True)
    for ds, frame in zip(sources, pixels):  # our series writer: InstanceNumber - 1 = array axis 2
        np.testing.assert_array_equal(frame.astype(np.uint8).sum(axis=-1), labels[:, :, int(ds.InstanceNumber) - 1].T)
    algo = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    # the fixture's checkpoint predates the training-data record: "unknown", said so rather than left out
    assert algo.AlgorithmParameters == f"checkpoint_sha256={file_sha256(trained_run / 'best.pt')},training_data=unknown"

    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["command"] == "predict" and run["finished"]
    assert run["checkpoints"][0]["sha256"] == file_sha256(trained_run / "best.pt")
    assert run["settings"]["inference"]["mode"] == "coarse-to-fine" and run["device"] == "cpu"
    from medseg.inference.cpu import cpu_bf16_flags, cpu_threads, resolve_precision

    expected = resolve_precision("auto", "cpu")  # its rules: tests/inference/test_cpu.py
    assert run["settings"]["inference"]["precision"] == "auto"  # --precision's default, resolved below
    assert run["settings"]["inference"]["runtime"] == "auto"  # resolves to torch in tests (tests/conftest.py)
    assert run["settings"]["compute"] == {"runtime": "torch", "openvino": None, "precision": expected,
                                          "threads": cpu_threads(),
                                          "cpu_bf16_flags": list(cpu_bf16_flags())}
    cases = {c["case_id"]: c for c in run["cases"]}
    dicom = cases["patient3"]
    assert dicom["study_uid"] == sources[0].StudyInstanceUID and dicom["series_uid"] == sources[0].SeriesInstanceUID
    assert {"read", "predict", "volumes", "dicom_seg", "preview"} <= set(dicom["timings_s"])
    assert sorted(os.path.basename(p) for p in dicom["outputs"]) == [
        "patient3_preview.png", "patient3_seg.dcm", "patient3_seg.nii.gz", "patient3_volumes.json"]
    assert "dicom_seg" not in cases["1"]["timings_s"]  # NIfTI input: no SEG by default

    volumes = pd.read_csv(out / "volumes.csv", dtype={"case": str})
    assert tuple(volumes.columns) == VOLUME_COLUMNS and sorted(volumes["case"]) == ["1", "patient3"]
    report = json.loads((out / "patient3_volumes.json").read_text())
    row = volumes.set_index("case").loc["patient3"]
    assert row["liver_ml"] == pytest.approx(report["liver_ml"], abs=5e-4)
    assert row["lesion_count"] == report["lesion_count"]
    expected = [] if report["lesion_count"] else ["dicom_seg: no tumor found: the SEG holds the liver segment only"]
    assert report["warnings"] == expected and str(row["warnings"]) == ("; ".join(expected) or "nan")
    lesions = pd.read_csv(out / "lesions.csv", dtype={"case": str})
    assert list(lesions.columns[:2]) == ["case", "lesion"] and len(lesions) == sum(
        json.loads((out / f"{c}_volumes.json").read_text())["lesion_count"] for c in ("1", "patient3"))


def test_dicom_seg_for_nifti_input_is_one_line(untrained_run, scans, tmp_path, capsys):
    out = tmp_path / "pred"
    code = main(["predict", "--model", str(untrained_run), str(scans / "nifti"), "--out", str(out),
                 "--format", "dicom-seg", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "volume-1.nii.gz" in err and "DICOM SEG needs a DICOM source" in err
    assert not out.exists() or not any(out.iterdir())


def test_unreferenceable_series_still_gets_its_nifti(trained_run, scans, tmp_path, capsys):
    folder = tmp_path / "anon"
    shutil.copytree(scans / "patient3", folder)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.StudyInstanceUID = ds.SeriesInstanceUID = ""
        ds.file_meta.MediaStorageSOPInstanceUID = ""
        ds.save_as(path)
    out = tmp_path / "pred"
    code = main(["predict", "--model", str(trained_run), str(folder), "--out", str(out), "--device", "cpu",
                 "--format", "dicom-seg", "--no-preview"])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["anon_seg.nii.gz", "anon_volumes.json", "lesions.csv",
                                                     "run.json", "volumes.csv"]
    (case,) = json.loads((out / "run.json").read_text())["cases"]
    text = " ".join(case["warnings"])
    assert "no SOPInstanceUID" in text and "NIfTI label map was written instead" in text
    assert "no SOPInstanceUID" in pd.read_csv(out / "volumes.csv")["warnings"][0]


def test_killed_predict_leaves_a_valid_manifest(untrained_run, scans, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(4):
        shutil.copy(scans / "nifti" / "volume-1.nii.gz", inputs / f"volume-{i}.nii.gz")
    out = tmp_path / "pred"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "medseg", "predict", "--model", str(untrained_run), str(inputs),
                             "--out", str(out), "--device", "cpu", "--no-preview"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            manifest = out / "run.json"
            if manifest.exists() and json.loads(manifest.read_text())["cases"]:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    run = json.loads((out / "run.json").read_text())  # valid JSON after a hard kill
    assert run["status"] == "running" and run["finished"] is None and run["pid"] == proc.pid
    assert 1 <= len(run["cases"]) < 4 and all(c["status"] == "ok" for c in run["cases"])
    for case in run["cases"]:
        assert all(os.path.exists(p) for p in case["outputs"])


def _strict_json(path):
    def refuse(constant):
        raise ValueError(f"{path}: {constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_every_json_of_predict_and_evaluate_is_strict_tumor_free_case_included(trained_run, tmp_path):
    """A tumor-free case has no tumor HU: ``null`` in every JSON, never ``NaN`` (issue #28)."""
    case = make_phantom(size="tiny", seed=3, index=2)
    free = case.label.array.copy()
    free[free == 2] = 1
    image = case.image.array.copy()
    image[case.label.array == 2] = int(np.median(case.image.array[case.label.array == 1]))
    data = tmp_path / "data"
    data.mkdir()
    from medseg.io import write_volume

    write_volume(case.image.with_array(image), data / "volume-2.nii.gz")
    write_volume(case.label.with_array(free), data / "segmentation-2.nii.gz", label=True)
    pred, evaluation = tmp_path / "pred", tmp_path / "eval"
    assert main(["predict", "--model", str(trained_run), str(data / "volume-2.nii.gz"), "--out", str(pred),
                 "--device", "cpu", "--no-progress", "--no-postprocessing"]) == 0  # fmt: skip
    assert main(["evaluate", "--pred", str(pred), "--ref", str(data), "--out", str(evaluation), "--no-figures"]) == 0
    files = sorted([*pred.glob("*.json"), *evaluation.glob("*.json")])
    assert {p.name for p in files} >= {"2_volumes.json", "run.json", "summary.json"}
    parsed = {p.name: _strict_json(p) for p in files}
    volumes = parsed["2_volumes.json"]
    assert volumes["tumor_ml"] == 0.0 and volumes["lesion_count"] == 0
    assert volumes["hu"]["tumor"] == {"mean": None, "std": None}  # was NaN: not JSON for strict readers
    assert volumes["hu"]["liver"]["mean"] == pytest.approx(float(np.median(image[free == 1])), abs=25)


def test_a_dicom_seg_prediction_scores_as_its_nifti_twin(trained_run, scans, tmp_path):
    """``predict --format dicom-seg`` output is read by ``evaluate`` (issue #28: it was scored as missing, Dice 0)."""
    from medseg.io import write_volume

    pred = tmp_path / "pred"
    assert main(["predict", "--model", str(trained_run), str(scans / "patient3"), "--out", str(pred), "--device",
                 "cpu", "--format", "both", "--no-preview", "--no-volumes", "--no-progress"]) == 0  # fmt: skip
    ref = tmp_path / "ref"
    ref.mkdir()
    write_volume(make_phantom(size="tiny", seed=3, index=3).label, ref / "patient3.nii.gz", label=True)
    only_seg, only_nifti = tmp_path / "seg", tmp_path / "nifti"
    for folder, name in ((only_seg, "patient3_seg.dcm"), (only_nifti, "patient3_seg.nii.gz")):
        folder.mkdir()
        shutil.copy(pred / name, folder / name)
    tables = {}
    for folder in (only_seg, only_nifti, pred):  # pred holds both: its NIfTI is read
        out = tmp_path / f"eval_{folder.name}"
        assert main(["evaluate", "--pred", str(folder), "--ref", str(ref), "--out", str(out), "--no-figures",
                     "--workers", "1"]) == 0  # fmt: skip
        tables[folder.name] = pd.read_csv(out / "per_case.csv", dtype={"case": str}).set_index("case")
    seg, nifti = tables["seg"], tables["nifti"]
    assert 0.5 < nifti.loc["patient3", "liver_dice"] < 1.0  # a real, imperfect prediction
    for column in ("liver_dice", "tumor_dice", "liver_hd95_mm", "liver_pred_volume_ml", "lesions_tp"):
        assert seg.loc["patient3", column] == pytest.approx(nifti.loc["patient3", column], nan_ok=True), column
        assert tables["pred"].loc["patient3", column] == pytest.approx(nifti.loc["patient3", column], nan_ok=True)
