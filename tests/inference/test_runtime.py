"""Runtime resolution: auto is OpenVINO on a CPU where it imports, PyTorch on CUDA and as the fallback."""

from __future__ import annotations

import sys

import pytest

from medseg.errors import ConfigError
from medseg.inference.predictor import InferenceSettings
from medseg.inference.runtime import network_input_shape, openvino_available, openvino_version, resolve_runtime

pytestmark = pytest.mark.openvino  # the real resolution (tests/conftest.py makes auto torch elsewhere)


def test_auto_is_openvino_on_cpu_where_it_imports():
    import openvino

    assert openvino_available()
    assert openvino_version() == openvino.get_version()
    assert resolve_runtime("auto", "cpu") == "openvino"
    assert resolve_runtime("openvino", "cpu") == "openvino"
    assert resolve_runtime("torch", "cpu") == "torch"


def test_auto_is_torch_on_cuda():
    assert resolve_runtime("auto", "cuda") == "torch"
    assert resolve_runtime("auto", "cuda:1") == "torch"
    with pytest.raises(ConfigError, match=r"runtime 'openvino' runs on the CPU, not on cuda:0"):
        resolve_runtime("openvino", "cuda:0")


def test_auto_falls_back_to_torch_where_openvino_does_not_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    assert not openvino_available() and openvino_version() is None
    assert resolve_runtime("auto", "cpu") == "torch"
    with pytest.raises(ConfigError, match=r"needs the openvino package: pip install openvino, or --runtime torch"):
        resolve_runtime("openvino", "cpu")


def test_bad_runtime_is_refused():
    with pytest.raises(ConfigError, match=r"runtime must be one of \['auto', 'torch', 'openvino'\], got 'onnx'"):
        resolve_runtime("onnx", "cpu")
    with pytest.raises(ConfigError, match="runtime must be one of"):
        InferenceSettings(runtime="tensorrt")


@pytest.mark.parametrize(("channels", "patch", "context", "expected"), [
    (1, (96, 96, 16), 0, (1, 96, 96, 16)),
    (1, (64, 64), 2, (5, 64, 64)),  # 2D: 2k + 1 slices as channels, as the sliding window stacks them
    (2, (64, 64), 1, (6, 64, 64)),
])  # fmt: skip
def test_network_input_shape(channels, patch, context, expected):
    assert network_input_shape(channels, patch, context) == expected
