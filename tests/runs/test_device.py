"""resolve_device: one rule for training and inference."""

from __future__ import annotations

import pytest
import torch

from medseg.errors import ConfigError
from medseg.runs import resolve_device


def test_auto_and_names(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device() == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert str(resolve_device("cpu")) == "cpu"  # the plain name a pipeline config stores
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert str(resolve_device("cuda:1")) == "cuda:1"


def test_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"device 'cuda:1' requested but CUDA is not available"):
        resolve_device("cuda:1")
    with pytest.raises(ConfigError, match=r"invalid device 'gpu0'"):
        resolve_device("gpu0")


def test_pipeline_config_uses_it(monkeypatch):
    from medseg.training.loader import load_pipeline

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load_pipeline("liver").device == "cpu"
    with pytest.raises(ConfigError, match="CUDA is not available"):
        load_pipeline("liver", device="cuda")
