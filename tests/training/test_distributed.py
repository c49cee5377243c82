"""Two-process DDP training on CPU with gloo, launched by torchrun exactly as docs/training.md shows."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from medseg.runs.checkpoint import load_checkpoint


def test_torchrun_two_process_gloo(tiny_dataset, tmp_path):
    run = tmp_path / "ddp"
    sets = ["data.folds=2", "training.epochs=2", "training.iterations_per_epoch=2", "training.batch_size=1",
            "training.workers=0", "training.patch_size=[32,32,16]", "model.depth=3", "model.strides=null",
            "model.base_filters=4",
            "validation.max_cases=1", f"data.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "medseg", "-v", "train", "liver", "--data", str(tiny_dataset), "--out", str(run),
               "--device", "cpu", "--no-progress", *[a for s in sets for a in ("--set", s)]]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 1 of 2 (gloo" in done.stderr and "rank 0 of 2 (gloo" in done.stderr
    state = load_checkpoint(run / "last.pt")
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert (run / "metrics.csv").read_text().count("\n") == 3  # header + 2 epochs, written once (rank 0)
