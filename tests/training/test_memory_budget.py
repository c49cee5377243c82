"""Settings checked against a memory estimate before anything is allocated (issue #29.10)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from medseg.errors import ConfigError
from medseg.preprocessing.plan import PreprocessingPlan
from medseg.training.loader import load_pipeline
from medseg.training.memory_budget import activation_bytes, check_memory_budget, resampled_case_bytes

GIB = 1 << 30


def _config(*overrides):
    return load_pipeline("liver", device="cpu", overrides=["model.base_filters=8", *overrides])


def test_resampled_size_of_a_case_by_hand():
    # 512 x 512 x 100 at 0.8 x 0.8 x 2.5 mm to 0.05 mm: x16, x16, x50 voxels per axis
    shape, needed = resampled_case_bytes((512, 512, 100), (0.8, 0.8, 2.5), (0.05, 0.05, 0.05))
    assert shape == (8192, 8192, 5000)
    assert needed == 5 * 8192 * 8192 * 5000 + 4 * 512 * 512 * 100  # 1.68 TB: float32 image + uint8 label + source


def test_activation_bound_by_hand_and_refused_settings():
    config = _config("training.batch_size=2", "training.patch_size=[64, 64, 32]")
    # 4 bytes x batch 2 x 131,072 voxels x (1 input channel + 8 filters + 3 classes)
    assert activation_bytes(config) == 4 * 2 * 64 * 64 * 32 * (1 + 8 + 3)
    plan = PreprocessingPlan.window((1.0, 1.0, 2.0))
    check_memory_budget(config, plan, available=GIB)  # 12.6 MB: fits
    huge_batch = _config("training.batch_size=100000", "training.patch_size=[64, 64, 32]")
    with pytest.raises(ConfigError, match=r"^training\.batch_size=100000 x training\.patch_size=\[64, 64, 32\] needs "
                                          r"at least 585\.9 GiB of activations .* more than the 8\.0 GiB of memory "
                                          r"available on the CPU; lower training\.batch_size or training\.patch_size$"):
        check_memory_budget(huge_batch, plan, available=8 * GIB)
    huge_patch = _config("training.batch_size=2", "training.patch_size=[2048, 2048, 1024]")
    with pytest.raises(ConfigError, match=r"patch_size=\[2048, 2048, 1024\] needs at least 384\.0 GiB"):
        check_memory_budget(huge_patch, plan, available=8 * GIB)
    with pytest.raises(ConfigError, match=r"more than the 4\.0 GiB of the training device"):
        check_memory_budget(huge_patch, plan, available=64 * GIB, device_memory=4 * GIB)


def test_target_spacing_refused_from_the_fingerprint():
    fingerprint = {"case_ids": ["0", "1"], "shapes": [[64, 64, 20], [512, 512, 100]],
                   "spacings_mm": [[1.0, 1.0, 2.0], [0.8, 0.8, 2.5]]}  # fmt: skip
    config = _config("training.batch_size=2", "training.patch_size=[64, 64, 32]")
    check_memory_budget(config, PreprocessingPlan.window((0.8, 0.8, 2.5)), fingerprint, available=8 * GIB)
    with pytest.raises(ConfigError, match=r"^preprocessing\.target_spacing_mm=\[0\.05, 0\.05, 0\.05\] resamples case 1 "
                                          r"\(512x512x100 voxels at 0\.8x0\.8x2\.5 mm\) to 8192x8192x5000 voxels "
                                          r"\(1\.5 TiB with its source and label\), more than the 8\.0 GiB"):
        check_memory_budget(config, PreprocessingPlan.window((0.05, 0.05, 0.05)), fingerprint, available=8 * GIB)


def test_medseg_train_refuses_a_tiny_target_spacing_before_resampling(tiny_dataset, tmp_path):
    """``medseg train`` with a 0.05 mm target spacing on the tiny phantom: refused from the fingerprint in one
    line, exit status 2, within 1 GiB of address space beyond the interpreter's (before the fix: a traceback
    after asking for 1,067,418,928,800 bytes)."""
    code = (
        "import resource, sys\n"
        "vm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmSize')) * 1024\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), vm + (1 << 30)))\n"
        "from medseg.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["train", "liver", "--data", str(tiny_dataset), "--out", str(tmp_path / "run"), "--device", "cpu",
            "--no-progress", "--set", "data.folds=2", "--set", "data.cache_dir=" + str(tmp_path / "cache"),
            "--set", "preprocessing.target_spacing_mm=[0.05, 0.05, 0.05]"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "preprocessing.target_spacing_mm=[0.05, 0.05, 0.05] resamples case" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npy"))
