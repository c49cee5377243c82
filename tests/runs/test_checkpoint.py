"""Checkpoints: round trip with weights_only, clear errors on foreign files, RNG state restore."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from medseg.errors import DataError
from medseg.models import build_model
from medseg.runs.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint

CONFIG = {"name": "unet", "spatial_dims": 2, "in_channels": 1, "out_channels": 3, "depth": 3, "base_filters": 4}


def test_round_trip_rebuilds_identical_model(tmp_path):
    torch.manual_seed(0)
    model = build_model(CONFIG).eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    model(torch.randn(1, 1, 16, 16)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "run" / "last.pt", {
        "model": model.state_dict(), "model_config": CONFIG, "optimizer": opt.state_dict(), "epoch": 3,
        "rng": capture_rng_state(), "best_metric": float("nan"),
    })  # fmt: skip
    assert path.is_file() and not list(path.parent.glob(".*tmp*"))  # no temporary left behind
    state = torch.load(path, weights_only=True)  # plain types and tensors only
    assert state["format_version"] == 1 and state["epoch"] == 3
    loaded = load_checkpoint(path)
    rebuilt = build_model(loaded["model_config"]).eval()
    rebuilt.load_state_dict(loaded["model"])
    x = torch.randn(1, 1, 15, 17)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    opt2 = torch.optim.SGD(rebuilt.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    opt2.load_state_dict(loaded["optimizer"])
    buf = next(iter(opt2.state.values()))["momentum_buffer"]
    torch.testing.assert_close(buf, next(iter(opt.state.values()))["momentum_buffer"])


def test_rng_state_restores_all_generators():  # the legacy global NumPy generator is what is saved
    state = capture_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    random.random(), np.random.rand(3), torch.rand(5)  # noqa: NPY002  (advance)
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first  # noqa: NPY002


def test_corrupt_and_foreign_files_raise_data_error(tmp_path):
    model = build_model(CONFIG)
    good = save_checkpoint(tmp_path / "good.pt", {"model": model.state_dict(), "model_config": CONFIG})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"truncated\.pt: not a readable checkpoint"):
        load_checkpoint(truncated)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(DataError, match="not a readable checkpoint"):
        load_checkpoint(text)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": model.state_dict()}, foreign)
    with pytest.raises(DataError, match="not a medseg checkpoint"):
        load_checkpoint(foreign)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format_version": 1, "model": {}, "model_config": CONFIG, "obj": np.arange(3)}, pickled)
    with pytest.raises(DataError, match="not a readable checkpoint"):
        load_checkpoint(pickled)
    newer = save_checkpoint(tmp_path / "newer.pt", {"format_version": 99, "model": {}, "model_config": CONFIG})
    with pytest.raises(DataError, match="newer"):
        load_checkpoint(newer)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
