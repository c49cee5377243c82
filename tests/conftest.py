"""Shared fixtures: tiny phantom cases and data sets made in the test session, never downloaded."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
# Each test process (each xdist worker) and every command it starts keeps the phantom sets, preprocessed
# arrays and converted OpenVINO networks in a cache of its own, removed at exit: never the user's
# ~/.cache/medseg, never shared between the two workers of `make test`.
_CACHE_HOME = tempfile.mkdtemp(prefix="medseg-test-cache-")
os.environ["XDG_CACHE_HOME"] = _CACHE_HOME
atexit.register(shutil.rmtree, _CACHE_HOME, ignore_errors=True)


def pytest_configure(config):
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture(autouse=True)
def _runtime_auto_is_torch(request, monkeypatch):
    """``runtime="auto"`` (the default) resolves to PyTorch in tests, which wrap, count and compare torch
    modules; tests marked ``openvino`` see the real resolution (OpenVINO on the CPU where it imports)."""
    if request.node.get_closest_marker("openvino") is None:
        monkeypatch.setattr("medseg.inference.runtime.openvino_available", lambda: False)


def pytest_collection_modifyitems(config, items):
    """Skip `gpu` tests when CUDA is not available."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_case():
    """Case 3 of the tiny phantom (seed 0): stored with permuted axes ('ALS'), 3 lesions."""
    from medseg.data import make_phantom

    return make_phantom(size="tiny", seed=0, index=3)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A 4-case tiny phantom data set in the LiTS layout (one case per storage orientation)."""
    from medseg.data import write_phantom_dataset

    out = tmp_path_factory.mktemp("tiny_phantom")
    write_phantom_dataset(out, cases=4, size="tiny", seed=0, workers=1, progress=False)
    return out


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs for full-disk tests (needs root and mount rights; skipped otherwise)."""
    import shutil
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None or subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True, check=False
    ).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill_disk(disk) -> None:
    """Fill the file system of ``disk`` to its last page (a probe write fails afterwards)."""
    import uuid

    try:
        with open(disk / f"filler-{uuid.uuid4().hex}", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    try:
        (disk / "probe").write_bytes(b"\0" * 4096)
    except OSError:
        return
    raise AssertionError(f"{disk} is not full")


#: Tiny training settings of the fold runs (as tests/training/test_loop.py): 2 folds, 4 iterations per epoch.
FOLD_TINY = ["data.folds=2", "training.iterations_per_epoch=4", "training.batch_size=2", "training.workers=0",
             "model.depth=3", "model.base_filters=8", "validation.every_n_epochs=1", "training.deterministic=true",
             "training.patch_size=[32,32,16]", "model.strides=null"]  # fmt: skip


@pytest.fixture(scope="session")
def fold_runs(tiny_dataset, tmp_path_factory):
    """``medseg train liver --fold all`` on the tiny data set: 2 folds of 1 epoch in ``<root>/fold<K>``."""
    from medseg.cli import main

    root = tmp_path_factory.mktemp("fold_runs") / "liver"
    cache = tmp_path_factory.mktemp("fold_cache")
    sets = [a for s in [*FOLD_TINY, f"data.cache_dir={cache}"] for a in ("--set", s)]
    code = main(["train", "liver", "--data", str(tiny_dataset), "--fold", "all", "--out", str(root),
                 "--device", "cpu", "--epochs", "1", "--no-progress", *sets])  # fmt: skip
    assert code == 0
    return root
