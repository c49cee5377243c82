"""OpenVINO as the runtime: the accuracy guard against PyTorch with trained weights, converted once per
network, and mirroring and fold ensembles around it unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.data import make_phantom
from medseg.inference import runtime_openvino
from medseg.inference.cpu import cpu_bf16_flags
from medseg.inference.predictor import InferenceSettings, Predictor

pytestmark = pytest.mark.openvino

#: Largest |OpenVINO float32 - PyTorch float32| logit allowed: float32 rounding in differently fused and
#: ordered convolutions (measured up to ~2e-4 on these networks), far below the logits' spread (~10).
LOGIT_ATOL = 2e-3

CASES = [make_phantom(size="tiny", seed=1, index=i) for i in range(3)]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two masks; 1.0 when both are empty (they agree)."""
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(a & b) / total


def _predictor(run, tmp_path, **settings) -> Predictor:
    return Predictor.from_run(run, device="cpu", settings=InferenceSettings(cache_dir=str(tmp_path / "ov"), **settings))


@pytest.fixture
def counted(monkeypatch):
    """Counts of conversions and compilations by the OpenVINO runtime."""
    calls = {"convert": 0, "compile": 0}
    convert, compile_model = runtime_openvino.convert_network, runtime_openvino.compile_model

    def counting_convert(*args, **kwargs):
        calls["convert"] += 1
        return convert(*args, **kwargs)

    def counting_compile(*args, **kwargs):
        calls["compile"] += 1
        return compile_model(*args, **kwargs)

    monkeypatch.setattr(runtime_openvino, "convert_network", counting_convert)
    monkeypatch.setattr(runtime_openvino, "compile_model", counting_compile)
    return calls


def test_openvino_float32_equals_pytorch_on_phantom_cases(trained_run, tmp_path):
    """The accuracy guard: per case, OpenVINO float32 against PyTorch float32 with trained weights: logits
    within LOGIT_ATOL, liver Dice >= 0.999 and tumor Dice >= 0.99 between the two label maps."""
    torch_ = _predictor(trained_run, tmp_path, runtime="torch", precision="float32")
    openvino = _predictor(trained_run, tmp_path, runtime="openvino", precision="float32")
    found = 0
    for case in CASES:
        ref_logits, _, ref_stats = torch_.predict_logits(case.image)
        logits, _, stats = openvino.predict_logits(case.image)
        assert (stats["runtime"], stats["precision"], ref_stats["runtime"]) == ("openvino", "float32", "torch")
        assert float((logits - ref_logits).abs().max()) <= LOGIT_ATOL
        ref, labels = torch_(case.image).array, openvino(case.image).array
        assert _dice(labels > 0, ref > 0) >= 0.999
        assert _dice(labels == 2, ref == 2) >= 0.99
        found += _dice(ref > 0, case.label.array > 0) > 0.6
    assert found == len(CASES)  # the trained weights find the liver: the guard compares real segmentations


@pytest.mark.skipif(not cpu_bf16_flags(), reason="this CPU has no native bfloat16 (amx_bf16 / avx512_bf16)")
def test_openvino_bfloat16_liver_dice_within_0_002_of_pytorch_float32(trained_run, tmp_path):
    """bfloat16 (AMX / AVX512-BF16): liver Dice against the phantom's reference within 0.002 of PyTorch
    float32's, per case (tumor not bounded: on a tiny lesion a few rounded voxels move its Dice)."""
    torch_ = _predictor(trained_run, tmp_path, runtime="torch", precision="float32")
    bf16 = _predictor(trained_run, tmp_path, runtime="openvino", precision="bfloat16")
    for case in CASES:
        reference = case.label.array > 0
        labels, stats = bf16.predict(case.image)
        assert stats["precision"] == "bfloat16" and stats["runtime"] == "openvino"
        liver = {"torch": _dice(torch_(case.image).array > 0, reference), "bf16": _dice(labels.array > 0, reference)}
        assert abs(liver["bf16"] - liver["torch"]) <= 0.002, liver


def test_converted_once_per_network_and_again_for_changed_weights(trained_run, tmp_path, counted):
    from medseg.runs.checkpoint import load_checkpoint, save_checkpoint

    first = _predictor(trained_run, tmp_path, runtime="openvino", precision="float32")
    for case in CASES[:2]:
        first(case.image)
    assert counted == {"convert": 1, "compile": 1}  # two scans: converted and compiled once
    second = _predictor(trained_run, tmp_path, runtime="openvino", precision="float32")
    second(CASES[0].image)
    assert counted == {"convert": 1, "compile": 2}  # a new predictor (process): read from the cache, compiled

    checkpoint = load_checkpoint(trained_run / "best.pt", map_location="cpu")
    checkpoint["model"] = {k: v * 1.05 for k, v in checkpoint["model"].items()}  # a retrained checkpoint
    changed = tmp_path / "changed"
    changed.mkdir()
    save_checkpoint(changed / "best.pt", checkpoint)
    retrained = _predictor(changed, tmp_path, runtime="openvino", precision="float32")
    logits, _, _ = retrained.predict_logits(CASES[0].image)
    assert counted == {"convert": 2, "compile": 3}  # converted again: the cache holds both
    assert len([p for p in (tmp_path / "ov").iterdir() if not p.name.startswith(".")]) == 2
    reference, _, _ = _predictor(changed, tmp_path, runtime="torch", precision="float32").predict_logits(CASES[0].image)
    assert float((logits - reference).abs().max()) <= LOGIT_ATOL  # the new weights, not the stale model


def test_mirroring_and_fold_ensemble_around_openvino(two_fold_runs, tmp_path, counted):
    """Test-time mirroring wraps the OpenVINO network and each fold of an ensemble is converted: the
    ensemble's mirrored logits equal PyTorch's."""
    case = CASES[0]
    settings = {"precision": "float32", "tta": True}
    reference, _, _ = _predictor(two_fold_runs, tmp_path, runtime="torch", **settings).predict_logits(case.image)
    logits, _, stats = _predictor(two_fold_runs, tmp_path, runtime="openvino", **settings).predict_logits(case.image)
    assert counted["convert"] == 2 and stats["runtime"] == "openvino"
    assert float((logits - reference).abs().max()) <= LOGIT_ATOL


def test_openvino_network_refuses_another_window(tmp_path):
    network = torch.nn.Conv3d(1, 3, 3, padding=1).eval()
    ov = runtime_openvino.openvino_network(network, input_shape=(1, 8, 8, 8), precision="float32", cache_dir=tmp_path)
    x = torch.randn(3, 1, 8, 8, 8)  # a batch size other than the example's: the batch dimension is dynamic
    with torch.no_grad():
        np.testing.assert_allclose(ov(x).numpy(), network(x).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match=r"converted for windows \(1, 8, 8, 8\), got \(1, 8, 8, 16\)"):
        ov(torch.randn(1, 1, 8, 8, 16))
