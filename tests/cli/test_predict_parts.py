"""A cohort predicted as Slurm array parts into one folder: the same tables as one run, resumable parts,
one line and failures.csv for the cohort (issue #31). The parts run as separate processes, as Slurm runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from medseg.data import make_phantom
from medseg.io import write_volume

N_SCANS = 5
SCRIPTS = Path(__file__).resolve().parents[2] / "docs" / "slurm"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Five tiny scans and one label map given as a scan (it fails in whichever part gets it)."""
    root = tmp_path_factory.mktemp("cohort")
    for index in range(N_SCANS):
        case = make_phantom(size="tiny", seed=5, index=index)
        write_volume(case.image, root / f"volume-{index}.nii.gz")
    label = make_phantom(size="tiny", seed=5, index=9).label
    write_volume(label, root / "volume-9.nii.gz", label=True)
    return root


def _predict(model, cohort, out, *extra, env=None, wait=True):
    command = [sys.executable, "-m", "medseg", "predict", "--model", str(model), str(cohort), "--out", str(out),
               "--device", "cpu", "--no-progress", "--no-preview", "--runtime", "torch", *extra]  # fmt: skip
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "HOME": str(out.parent), **(env or {})}
    process = subprocess.Popen(command, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return process
    _, err = process.communicate(timeout=300)
    return process.returncode, err


def _slurm(task: int, count: int) -> dict:
    return {"SLURM_ARRAY_TASK_ID": str(task + 1), "SLURM_ARRAY_TASK_COUNT": str(count), "SLURM_ARRAY_TASK_MIN": "1"}


def _tables(folder):
    volumes = pd.read_csv(folder / "volumes.csv", dtype={"case": str}).sort_values("case").reset_index(drop=True)
    lesions = pd.read_csv(folder / "lesions.csv", dtype={"case": str}).sort_values(["case", "lesion"])
    return volumes, lesions.reset_index(drop=True)


def _sbatch_array_task(model, cohort, out, task: int, count: int) -> subprocess.Popen:
    """docs/slurm/predict_array.sbatch as Slurm runs one task of the array: bash, the array variables set."""
    env = {**os.environ, **_slurm(task, count), "MODEL": str(model), "SCANS": str(cohort), "OUT": str(out),
           "MEDSEG_PREDICT_ARGS": "--device cpu --no-preview --runtime torch", "SLURM_CPUS_PER_TASK": "1",
           "HOME": str(out.parent), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # fmt: skip
    return subprocess.Popen(["bash", str(SCRIPTS / "predict_array.sbatch")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_two_array_parts_at_once_give_the_tables_of_one_run(trained_run, cohort, tmp_path):
    single = tmp_path / "single"
    code, _ = _predict(trained_run, cohort, single)
    assert code == 2  # the label map given as a scan fails
    shared = tmp_path / "parts"
    parts = [_sbatch_array_task(trained_run, cohort, shared, k, 2) for k in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in parts]
    assert sorted(p.returncode for p in parts) == [0, 2], errs  # the bad scan is in exactly one part
    for (a, b) in zip(_tables(single), _tables(shared)):
        pd.testing.assert_frame_equal(a.drop(columns=[c for c in a if c == "input"]),
                                      b.drop(columns=[c for c in b if c == "input"]))  # fmt: skip
    assert sorted(_tables(shared)[0]["case"]) == [str(i) for i in range(N_SCANS)]
    last = [e for e in errs if "cohort of 2 parts done" in e]
    assert len(last) == 1 and f"cohort of 2 parts done: {N_SCANS} predicted, 0 skipped, 1 failed" in last[0]
    failures = pd.read_csv(shared / "failures.csv", dtype={"case": str})
    assert failures["case"].tolist() == ["9"] and "label map" in failures["reason"][0]
    assert failures["part"][0] in ("0/2", "1/2")
    import json

    run = json.loads((shared / "run.json").read_text())
    assert sorted(c["case_id"] for c in run["cases"]) == [*[str(i) for i in range(N_SCANS)], "9"]
    assert {c["part"] for c in run["cases"]} == {"0/2", "1/2"}


def test_a_killed_part_resumes_with_skip_existing_and_predicts_only_the_rest(trained_run, cohort, tmp_path):
    out = tmp_path / "killed"
    mine = sorted([*[str(i) for i in range(N_SCANS)], "9"])[0::2]  # part 0 of 2: sorted ids 0, 2, 4
    process = _predict(trained_run, cohort, out, "--part", "0/2", wait=False)
    deadline = time.monotonic() + 240
    while not list(out.glob("*_seg.nii.gz")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    done = sorted(p.name.split("_")[0] for p in out.glob("*_seg.nii.gz"))
    assert done and set(done) <= set(mine)
    code, err = _predict(trained_run, cohort, out, "--part", "0/2", "--skip-existing")
    assert code == 0, err
    assert f"{len(mine) - len(done)} predicted, {len(done)} skipped (output exists), 0 failed" in err
    assert sorted(p.name.split("_")[0] for p in out.glob("*_seg.nii.gz")) == mine
