"""CPU precision and threads: resolve_precision, physical_cores, and bfloat16 autocast's accuracy."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from medseg.data import make_phantom
from medseg.inference import cpu
from medseg.inference.cpu import cpu_threads, physical_cores, resolve_precision
from medseg.inference.predictor import InferenceSettings, Predictor


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.mark.parametrize(("flags", "onednn", "expected"), [
    (("amx_bf16",), True, "bfloat16"), (("avx512_bf16",), True, "bfloat16"),
    ((), True, "float32"), (("amx_bf16",), False, "float32"),
])  # fmt: skip
def test_auto_takes_bfloat16_only_with_native_support(monkeypatch, flags, onednn, expected):
    monkeypatch.setattr(cpu, "cpu_bf16_flags", lambda: flags)
    monkeypatch.setattr(cpu, "_onednn_bf16", lambda: onednn)
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("float32", "cpu") == "float32"
    assert resolve_precision("bfloat16", "cpu") == "bfloat16"  # forced, native or not
    assert resolve_precision("auto", "cuda") == "float32"  # CUDA's float16 autocast is `amp`


def test_bad_precision_is_refused():
    with pytest.raises(ValueError, match=r"precision must be one of \['auto', 'float32', 'bfloat16'\], got 'fp16'"):
        resolve_precision("fp16", "cpu")
    from medseg.errors import ConfigError

    with pytest.raises(ConfigError, match="precision must be one of"):
        InferenceSettings(precision="half")


def test_physical_cores_within_the_affinity():
    assert 1 <= physical_cores() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("env", "world", "expected"), [
    (None, 1, lambda cores: cores), ("1", 1, lambda cores: 1), ("64", 1, lambda cores: cores),
    ("junk", 1, lambda cores: cores), (None, 64, lambda cores: 1), ("0", 1, lambda cores: cores)])  # fmt: skip
def test_cpu_threads_honour_omp_num_threads(monkeypatch, env, world, expected):
    """``OMP_NUM_THREADS=1`` caps predict's threads (issue #28: run.json showed 2)."""
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert cpu_threads(world) == expected(physical_cores())


def test_cpu_bfloat16_autocast_is_in_effect_and_returns_float32():
    """``cpu_bfloat16`` runs the windows under bfloat16 autocast: float32 logits that differ from float32's
    (by bfloat16 rounding, far less than the logits' spread)."""
    from medseg.inference.sliding_window import WindowSettings, predict_logits
    from medseg.models import build_model

    torch.manual_seed(0)
    network = build_model({"name": "unet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3, "depth": 3,
                           "base_filters": 4}).eval()
    image = torch.randn(1, 20, 18, 16)
    out = {flag: predict_logits(network, image, WindowSettings(patch_size=(16, 16, 16), num_classes=3,
                                                               cpu_bfloat16=flag)) for flag in (False, True)}
    assert out[True].dtype == torch.float32 and out[True].shape == (3, 20, 18, 16)
    difference = (out[True] - out[False]).abs().max()
    assert 0 < difference < 0.1 * out[False].std()


def test_bfloat16_dice_within_0_002_of_float32(trained_run):
    """On a phantom, bfloat16 autocast leaves liver and tumor Dice against the reference within 0.002 of
    float32's; the precision used is reported in the stats."""
    case = make_phantom(size="tiny", seed=1, index=0)
    masks = {}
    for precision in ("float32", "bfloat16"):
        predictor = Predictor.from_run(trained_run, device="cpu", settings=InferenceSettings(precision=precision))
        labels, stats = predictor.predict(case.image)
        assert stats["precision"] == precision and stats["threads"] == torch.get_num_threads()
        masks[precision] = labels.array
    ref = case.label.array
    for region in ((1, 2), (2,)):
        dice = {p: _dice(np.isin(labels, region), np.isin(ref, region)) for p, labels in masks.items()}
        assert dice["float32"] > 0.6 or region == (2,)  # the briefly trained model finds the liver
        assert abs(dice["bfloat16"] - dice["float32"]) <= 0.002, (region, dice)
