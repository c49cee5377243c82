"""Kill tests of the epoch commit order: a `medseg train` subprocess is SIGKILLed at a chosen moment (after
the final epoch's last.pt, inside the first epoch, after an epoch's metrics row or best.pt, in the middle of
writing last.pt), then `--resume` must finish with the same metrics.csv, best.pt and last.pt as an
uninterrupted run (same seed, deterministic on CPU; only the wall-clock `seconds` column may differ)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from medseg.cli import main

# 2 epochs x 2 iterations, validated every epoch (so best.pt moves), one thread like the test process
TINY = ["data.folds=2", "training.iterations_per_epoch=2", "training.batch_size=2", "training.workers=0",
        "model.depth=3", "model.base_filters=8", "validation.max_cases=1", "validation.every_n_epochs=1",
        "training.deterministic=true", "training.patch_size=[32,32,16]", "model.strides=null",
        "training.epochs=2"]  # fmt: skip

# The hooks: patched into the library inside the subprocess (no environment variables, no test-only code
# in medseg), each kills the process with SIGKILL at its moment.
WRAPPER = textwrap.dedent('''
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    moment, epoch = sys.argv[1].split(":")
    epoch = int(epoch)

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    import medseg.runs.checkpoint as checkpoint
    import medseg.training.epoch as epoch_module
    import medseg.training.records as records

    save, write_csv, step, torch_save = (checkpoint.save_checkpoint, records.write_metrics_csv,
                                         epoch_module._train_step, torch.save)

    def hooked_save(path, state):
        out = save(path, state)
        if moment == "after" and path.name == sys.argv[2] and state["epoch"] == epoch:
            die()
        return out

    def hooked_csv(path, history):
        out = write_csv(path, history)
        if moment == "after" and sys.argv[2] == "metrics.csv" and len(history) == epoch:
            die()
        return out

    calls = []

    def hooked_step(session, batch, e):
        calls.append(e)
        if moment == "step" and len(calls) == epoch:
            die()
        return step(session, batch, e)

    import medseg.preprocessing as preprocessing

    preprocess = preprocessing.preprocess_dataset

    def hooked_preprocess(*args, **kwargs):
        if moment == "prep":
            die()
        return preprocess(*args, **kwargs)

    preprocessing.preprocess_dataset = hooked_preprocess

    def hooked_torch_save(obj, f, *args, **kwargs):
        name = os.path.basename(str(f))
        if moment == "during" and name.startswith(".last.") and obj.get("epoch") == epoch:
            torch_save(obj, f, *args, **kwargs)
            with open(f, "r+b") as handle:  # half a checkpoint on disk, then the kill
                handle.truncate(os.path.getsize(f) // 2)
            die()
        return torch_save(obj, f, *args, **kwargs)

    checkpoint.save_checkpoint, records.write_metrics_csv = hooked_save, hooked_csv
    epoch_module._train_step, torch.save = hooked_step, hooked_torch_save
    from medseg.cli import main
    sys.exit(main(sys.argv[3:]))
''')


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("preprocessed")


def _args(data, cache, out):
    sets = [a for s in [*TINY, f"data.cache_dir={cache}"] for a in ("--set", s)]
    return ["train", "liver", "--data", str(data), "--out", str(out), "--device", "cpu", "--no-progress", *sets]


@pytest.fixture(scope="module")
def reference(tiny_dataset, cache, tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(_args(tiny_dataset, cache, out)) == 0
    return out


def _kill_run(tmp_path, data, cache, out, moment: str, file: str = "-") -> None:
    script = tmp_path / "kill_train.py"
    script.write_text(WRAPPER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(script), moment, file, *_args(data, cache, out)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def _rows(run):
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def _same(a, b, where=""):
    """Recursive equality of checkpoint contents (tensors bit for bit), ignoring wall-clock seconds."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        keys = set(a) - {"seconds"}
        assert keys == set(b) - {"seconds"}, where
        for k in keys:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


def _assert_same_run(run, reference):
    assert _rows(run) == _rows(reference)
    for name in ("best.pt", "last.pt"):
        _same(torch.load(run / name, weights_only=True), torch.load(reference / name, weights_only=True), name)
    assert not [p.name for p in run.iterdir() if "medseg-tmp" in p.name]  # the kill's temporary file is gone


def _resume(out) -> None:
    assert main(["train", "liver", "--out", str(out), "--resume", "--no-progress"]) == 0


def test_kill_after_final_last_pt_leaves_a_complete_run(tiny_dataset, cache, tmp_path):
    """Fast (no reference run): everything of the final epoch is on disk before its last.pt, so a kill right
    after last.pt leaves metrics.csv, best.pt and last.pt of the final epoch, and --resume says done."""
    out = tmp_path / "run"
    _kill_run(tmp_path, tiny_dataset, cache, out, "after:2", "last.pt")
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["epoch"] == 2
    assert _rows(out) == [{k: str(v) for k, v in r.items() if k != "seconds"} for r in last["history"]]
    best = torch.load(out / "best.pt", weights_only=True)
    metrics = [r["val_metric"] for r in last["history"]]
    assert best["epoch"] == 1 + metrics.index(max(metrics)) and best["best_metric"] == max(metrics)
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".pt", ".csv", ".png")}
    _resume(out)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".pt", ".csv", ".png")} == files


@pytest.mark.slow
@pytest.mark.parametrize(
    ("moment", "file"),
    [
        ("prep:0", "-"),  # while preparing the data: only config.yaml and data.json
        ("step:1", "-"),  # inside the first epoch: no last.pt yet
        ("after:2", "metrics.csv"),  # final epoch's row written, best.pt and last.pt not yet
        ("after:2", "best.pt"),  # the killed epoch was the best so far: best.pt ahead of last.pt
        ("after:1", "last.pt"),  # between epochs
        ("after:2", "last.pt"),  # after the final epoch's last.pt
        ("during:2", "-"),  # half of the final last.pt written into its temporary file
    ],
)
def test_kill_at_any_moment_resumes_to_the_same_run(tiny_dataset, cache, reference, tmp_path, moment, file):
    out = tmp_path / "run"
    _kill_run(tmp_path, tiny_dataset, cache, out, moment, file)
    if moment == "during:2":
        assert [p for p in out.iterdir() if "medseg-tmp" in p.name]  # the kill left a half-written checkpoint
    _resume(out)
    _assert_same_run(out, reference)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A mount point for a tmpfs (root only; skipped where mounting is not allowed)."""
    import shutil

    point = tmp_path / "tmpfs"
    point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")

    def mount(size_kb: int):
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(point)],
                              capture_output=True, text=True)  # fmt: skip
        if proc.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        return point

    yield mount
    import gc

    gc.collect()  # a checkpoint reader still open would keep the file system busy
    if subprocess.run(["umount", str(point)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)  # detach it once the last file closes


@pytest.mark.slow
def test_resume_whose_checkpoint_does_not_fit_is_one_line_and_keeps_the_files(
    tiny_dataset, cache, tmp_path, small_tmpfs, capsys
):
    import shutil

    first = tmp_path / "first"
    assert main([*_args(tiny_dataset, cache, first), "--epochs", "1"]) == 0
    used_kb = sum(p.stat().st_size for p in first.iterdir()) // 1024
    checkpoint_kb = (first / "last.pt").stat().st_size // 1024
    run = small_tmpfs(used_kb + 64 + checkpoint_kb // 2) / "run"  # room for the small files, not a checkpoint
    shutil.copytree(first, run)
    before = {name: (run / name).read_bytes() for name in ("last.pt", "best.pt")}
    capsys.readouterr()
    code = main(["train", "liver", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"medseg train: error: {run}/") and err[0].endswith(": No space left on device"), err
    assert {name: (run / name).read_bytes() for name in ("last.pt", "best.pt")} == before  # previous files intact
    assert not [p.name for p in run.iterdir() if "medseg-tmp" in p.name]  # no temporary file left
