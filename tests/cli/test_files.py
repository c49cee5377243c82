"""Files and durability through the CLI: outputs never over inputs, full disks, odd names, kills.

The full-disk tests mount a 1 MiB tmpfs (root only; skipped otherwise), write a first result, fill the
disk to the last page and run the command again: one line naming the file and the cause, exit 2, and the
earlier files byte for byte as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medseg.cli import main

from ..conftest import fill_disk


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: _digest(p) for p in sorted(folder.iterdir()) if p.is_file()}


def _one_error_line(err: str, command: str) -> str:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith(f"medseg {command}: error:")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.fixture
def dataset(tiny_dataset, tmp_path):
    """A private copy of the tiny phantom data set (tests may try to damage it)."""
    return Path(shutil.copytree(tiny_dataset, tmp_path / "data"))


# ------------------------------------------------------------------------------------------------
# never write over an input


def test_volumes_json_over_its_input_is_refused(dataset, capsys):
    seg = dataset / "segmentation-2.nii.gz"
    before = _digests(dataset)
    assert main(["volumes", str(seg), "--json", str(seg)]) == 2
    assert "--json is an input" in _one_error_line(capsys.readouterr().err, "volumes")
    assert main(["volumes", str(seg), "--image", str(dataset / "volume-2.nii.gz"),
                 "--csv", str(dataset / "volume-2.nii.gz")]) == 2
    assert "--csv is an input" in _one_error_line(capsys.readouterr().err, "volumes")
    assert _digests(dataset) == before


def test_check_csv_over_a_data_set_file_is_refused_before_checking(dataset, capsys):
    before = _digests(dataset)
    assert main(["check", str(dataset), "--csv", str(dataset / "volume-2.nii.gz"), "--workers", "1"]) == 2
    captured = capsys.readouterr()
    assert "--csv is an input" in _one_error_line(captured.err, "check")
    assert captured.out == ""  # refused before any case was read
    assert _digests(dataset) == before
    assert main(["check", str(dataset), "--csv", str(dataset / "report.csv"), "--workers", "1"]) == 0  # a new file


def test_phantom_over_an_existing_data_set_is_refused(dataset, tmp_path, capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    shutil.copy(dataset / "volume-0.nii.gz", theirs / "volume-0.nii.gz")
    before = _digests(theirs)
    assert main(["phantom", str(theirs), "--cases", "1", "--size", "tiny", "--workers", "1"]) == 2
    assert "refusing to write a phantom over it" in _one_error_line(capsys.readouterr().err, "phantom")
    assert _digests(theirs) == before
    # An earlier phantom with another seed is someone's data too; the same phantom may be rewritten.
    assert main(["phantom", str(dataset), "--cases", "4", "--size", "tiny", "--seed", "1", "--workers", "1"]) == 2
    assert "different phantom" in _one_error_line(capsys.readouterr().err, "phantom")
    (tmp_path / "file").write_text("x")
    assert main(["phantom", str(tmp_path / "file"), "--size", "tiny"]) == 2
    assert "existing file" in _one_error_line(capsys.readouterr().err, "phantom")


def test_same_phantom_can_be_rewritten(tmp_path, capsys):
    out = tmp_path / "ph"
    assert main(["phantom", str(out), "--cases", "1", "--size", "tiny", "--workers", "1"]) == 0
    first = _digest(out / "segmentation-0.nii.gz")
    assert main(["phantom", str(out), "--cases", "2", "--size", "tiny", "--workers", "1"]) == 0
    assert _digest(out / "segmentation-0.nii.gz") == first and (out / "volume-1.nii.gz").is_file()


def test_evaluate_out_over_inputs_or_a_file_is_one_line(dataset, tmp_path, capsys):
    pred = tmp_path / "pred"
    pred.mkdir()
    shutil.copy(dataset / "segmentation-0.nii.gz", pred / "0_seg.nii.gz")
    before = _digests(pred)
    assert main(["evaluate", "--pred", str(pred), "--ref", str(dataset), "--out", str(pred)]) == 2
    assert "--out is an input" in _one_error_line(capsys.readouterr().err, "evaluate")
    assert main(["evaluate", "--pred", str(pred), "--ref", str(dataset), "--out", str(pred / "0_seg.nii.gz")]) == 2
    assert "names an existing file" in _one_error_line(capsys.readouterr().err, "evaluate")
    # A reference folder holding a file named like a report: evaluate --out REF would replace it.
    (dataset / "lesions.csv").write_text("mine")
    assert main(["evaluate", "--pred", str(pred), "--ref", str(dataset), "--out", str(dataset)]) == 2
    assert _digests(pred) == before and (dataset / "lesions.csv").read_text() == "mine"


def test_predict_out_over_its_input_is_refused_before_loading_the_model(untrained_run, dataset, tmp_path, capsys):
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(dataset / "volume-1.nii.gz", scans / "7_seg.nii.gz")  # a scan whose output name is its own
    before = _digests(scans)
    assert main(["predict", "--model", str(untrained_run), str(scans / "7_seg.nii.gz"), "--out", str(scans),
                 "--device", "cpu"]) == 2
    assert "is an input" in _one_error_line(capsys.readouterr().err, "predict")
    assert main(["predict", "--model", str(tmp_path / "no_such_run"), str(scans), "--out", str(scans)]) == 2
    assert "--out is an input" in _one_error_line(capsys.readouterr().err, "predict")  # checked before the model
    assert main(["predict", "--model", str(untrained_run), str(scans), "--out", str(scans / "7_seg.nii.gz")]) == 2
    assert "names an existing file" in _one_error_line(capsys.readouterr().err, "predict")
    assert _digests(scans) == before


def test_train_out_over_the_data_set_is_refused(dataset, capsys):
    before = _digests(dataset)
    assert main(["train", "liver", "--data", str(dataset), "--out", str(dataset), "--epochs", "1"]) == 2
    assert "--out is an input" in _one_error_line(capsys.readouterr().err, "train")
    assert _digests(dataset) == before


# ------------------------------------------------------------------------------------------------
# full disk


def _assert_full_disk_line(err: str, command: str, folder: Path) -> None:
    line = _one_error_line(err, command)
    assert str(folder) in line and "No space left on device (ENOSPC)" in line, line


def test_full_disk_evaluate_keeps_the_earlier_result(dataset, small_disk, tmp_path, capsys):
    pred = tmp_path / "pred"
    pred.mkdir()
    for case in ("0", "1"):
        shutil.copy(dataset / f"segmentation-{case}.nii.gz", pred / f"{case}_seg.nii.gz")
    out = small_disk / "eval"
    args = ["evaluate", "--pred", str(pred), "--ref", str(dataset), "--out", str(out), "--workers", "1", "--no-figures",
            "--allow-missing"]  # fmt: skip
    assert main(args) == 0
    before = _digests(out)
    assert json.loads((out / "summary.json").read_text())["status"] == "complete"
    fill_disk(small_disk)
    capsys.readouterr()
    assert main(args) == 2
    _assert_full_disk_line(capsys.readouterr().err, "evaluate", out)
    assert _digests(out) == before  # no temporary files left either


def test_full_disk_volumes_and_check(dataset, small_disk, capsys):
    seg = dataset / "segmentation-2.nii.gz"
    vol_args = ["volumes", str(seg), "--json", str(small_disk / "v.json"), "--csv", str(small_disk / "l.csv")]
    check_args = ["check", str(dataset), "--csv", str(small_disk / "c.csv"), "--workers", "1"]
    assert main(vol_args) == 0 and main(check_args) == 0
    before = _digests(small_disk)
    fill_disk(small_disk)
    capsys.readouterr()
    assert main(vol_args) == 2
    _assert_full_disk_line(capsys.readouterr().err, "volumes", small_disk / "v.json")
    assert main(check_args) == 2
    _assert_full_disk_line(capsys.readouterr().err, "check", small_disk / "c.csv")
    after = {k: v for k, v in _digests(small_disk).items() if k in before}
    assert after == before and not [p for p in small_disk.iterdir() if p.name.startswith(".")]


def test_full_disk_phantom_is_one_line(small_disk, capsys):
    fill_disk(small_disk)
    assert main(["phantom", str(small_disk / "ph"), "--cases", "1", "--size", "tiny", "--workers", "1"]) == 2
    _assert_full_disk_line(capsys.readouterr().err, "phantom", small_disk / "ph")
    assert [p.name for p in (small_disk / "ph").iterdir()] == []


# ------------------------------------------------------------------------------------------------
# names and folders


def test_non_utf8_file_names(dataset, tmp_path, capsys):
    name = os.fsdecode(b"caf\xe9")
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir(), ref.mkdir()
    for case, src in (("0", "0"), (name, "1")):
        shutil.copy(dataset / f"segmentation-{src}.nii.gz", pred / f"{case}_seg.nii.gz")
        shutil.copy(dataset / f"segmentation-{src}.nii.gz", ref / f"{case}.nii.gz")
    out = tmp_path / "eval"
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out), "--workers", "1"]) == 0
    assert b"caf\xe9," in (out / "per_case.csv").read_bytes()  # the name's bytes as they are on disk
    seg = pred / f"{name}_seg.nii.gz"
    proc = subprocess.run([sys.executable, "-m", "medseg", "volumes", seg, "--json", tmp_path / f"{name}.json"],
                          capture_output=True, check=False)  # in a process: the name is printed as its bytes
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(os.fsencode(seg) + b"\n")
    assert json.loads((tmp_path / f"{name}.json").read_text())["file"] == str(seg)


def test_predict_a_non_utf8_scan_name(untrained_run, dataset, tmp_path):
    scan = tmp_path / os.fsdecode(b"caf\xe9.nii.gz")
    shutil.copy(dataset / "volume-0.nii.gz", scan)
    out = tmp_path / "pred"
    proc = subprocess.run([sys.executable, "-m", "medseg", "-v", "predict", "--model", untrained_run, scan, "--out",
                           out, "--device", "cpu"], capture_output=True, check=False)
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr.decode(errors="replace")
    stem = os.fsdecode(b"caf\xe9")
    assert {f"{stem}_seg.nii.gz", f"{stem}_volumes.json", f"{stem}_preview.png"} <= {p.name for p in out.iterdir()}


def test_predict_finds_training_batch_folders(untrained_run, dataset, tmp_path, capsys):
    lits = tmp_path / "LiTS"
    for batch, cases in (("Training Batch 1", ("0", "1")), ("Training Batch 2", ("2",))):
        (lits / batch).mkdir(parents=True)
        for case in cases:
            for kind in ("volume", "segmentation"):
                shutil.copy(dataset / f"{kind}-{case}.nii.gz", lits / batch / f"{kind}-{case}.nii.gz")
    assert main(["check", str(lits), "--workers", "1"]) == 0
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(untrained_run), str(lits), "--out", str(out), "--device", "cpu",
                 "--no-volumes"]) == 0
    assert sorted(p.name for p in out.glob("*_seg.nii.gz")) == ["0_seg.nii.gz", "1_seg.nii.gz", "2_seg.nii.gz"]


# ------------------------------------------------------------------------------------------------
# a killed evaluate

_KILLED_EVALUATE = """
import os, signal, sys
import medseg.evaluation.report as report
from medseg.cli import main

real, calls = report.atomic_write_csv, []

def write_or_die(*args, **kwargs):
    calls.append(1)
    if len(calls) == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)

report.atomic_write_csv = write_or_die
main(sys.argv[2:])
"""


@pytest.mark.parametrize("kill_at", [2, pytest.param(1, marks=pytest.mark.slow)])
def test_killed_evaluate_leaves_a_recognisably_partial_result(dataset, tmp_path, kill_at):
    """SIGKILL at the first result file (``kill_at=1``) or after per_case.csv (``2``) of a second run."""
    pred = tmp_path / "pred"
    pred.mkdir()
    shutil.copy(dataset / "segmentation-0.nii.gz", pred / "0_seg.nii.gz")
    out = tmp_path / "eval"
    args = ["evaluate", "--pred", str(pred), "--ref", str(dataset), "--out", str(out), "--workers", "1",
            "--no-figures", "--allow-missing"]
    assert main(args) == 0
    first = _digests(out)
    assert json.loads((out / "summary.json").read_text())["status"] == "complete"
    proc = subprocess.run([sys.executable, "-c", _KILLED_EVALUATE, str(kill_at), *args], capture_output=True,
                          check=False)
    assert proc.returncode == -9, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "incomplete" and "regions" not in summary
    if (out / "run.json").exists():  # the run manifest agrees: started, never finished
        assert json.loads((out / "run.json").read_text())["status"] == "running"
    assert _digests(out)["lesions.csv"] == first["lesions.csv"]  # an earlier run's file, flagged by the summary
    assert main(args) == 0  # the next run completes the set and removes the killed run's leftovers
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert set(summary["files"]) == {"per_case.csv", "lesions.csv", "summary.json"}
    assert {p.name for p in out.iterdir()} - {"run.json"} == set(summary["files"])  # no temporary or lock file


def test_second_evaluate_into_a_busy_folder_is_refused(dataset, tmp_path, capsys):
    pred = tmp_path / "pred"
    pred.mkdir()
    shutil.copy(dataset / "segmentation-0.nii.gz", pred / "0_seg.nii.gz")
    out = tmp_path / "eval"
    hold = ("import sys, time\nfrom medseg.utils.lock import folder_lock\n"
            "with folder_lock(sys.argv[1], 'evaluate'):\n    print('locked', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert main(["evaluate", "--pred", str(pred), "--ref", str(dataset), "--out", str(out), "--workers", "1"]) == 2
        assert f"in use by PID {proc.pid}" in _one_error_line(capsys.readouterr().err, "evaluate")
        assert {p.name for p in out.iterdir()} == {".medseg-evaluate.lock"}  # nothing of ours written
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_two_predicts_into_one_folder_leave_consistent_cases(untrained_run, trained_run, dataset, tmp_path):
    """Two `medseg predict` with different models into one folder: every case's label map and volumes
    JSON come from the same process (checked by re-measuring the map), nothing half-written is left."""
    from medseg.evaluation.volumes import volumes_report
    from medseg.io import read_volume

    out = tmp_path / "pred"
    scans = [str(dataset / f"volume-{i}.nii.gz") for i in range(4)]
    procs = [subprocess.Popen([sys.executable, "-m", "medseg", "predict", "--model", str(run), *scans, "--out",
                               str(out), "--device", "cpu"], stderr=subprocess.PIPE)
             for run in (untrained_run, trained_run)]
    for proc in procs:
        assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()
    for i in range(4):
        seg = read_volume(out / f"{i}_seg.nii.gz")
        recorded = json.loads((out / f"{i}_volumes.json").read_text())
        assert recorded["liver_ml"] == pytest.approx(volumes_report(seg)["liver_ml"])
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
