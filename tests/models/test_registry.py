"""The model registry: names, builder parameters, registration, parameter counts, required keys."""

from __future__ import annotations

import pytest
from torch import nn

from medseg.errors import ConfigError
from medseg.models import available_models, build_model, count_parameters, model_parameters
from medseg.models.registry import register_model


def test_names_are_sorted_and_parameters_have_defaults():
    names = available_models()
    assert names == sorted(names) and "unet" in names
    params = model_parameters("unet")
    assert (params["depth"], params["base_filters"], params["norm"]) == (5, 32, "instance")  # nnU-Net-like
    assert not {"name", "spatial_dims", "in_channels", "out_channels"} & set(params)  # required keys apart
    with pytest.raises(ConfigError, match=r"model\.name: unknown model 'vnet'; available: .*unet"):
        model_parameters("vnet")


def test_register_twice_is_refused():
    with pytest.raises(ValueError, match="model 'unet' is already registered"):
        register_model("unet")(lambda **kw: nn.Identity())


def test_required_keys_and_types():
    base = {"name": "unet", "spatial_dims": 2, "in_channels": 1, "out_channels": 3, "depth": 3, "base_filters": 4}
    with pytest.raises(ConfigError, match=r"model config lacks in_channels, out_channels \(required: name"):
        build_model({"name": "unet", "spatial_dims": 2})
    with pytest.raises(ConfigError, match=r"model\.in_channels must be a positive integer, got True"):
        build_model({**base, "in_channels": True})
    with pytest.raises(ConfigError, match=r"model: unknown key\(s\) widht for 'unet'; valid: "):
        build_model({**base, "widht": 2})


def test_count_parameters_trainable_only():
    layer = nn.Linear(3, 2)  # 3 * 2 weights + 2 biases
    assert count_parameters(layer) == 8
    layer.bias.requires_grad_(False)
    assert count_parameters(layer) == 6 and count_parameters(layer, trainable_only=False) == 8


def test_docs_models_lists_every_network_with_its_paper():
    """docs/models.md has a table row per registered network naming its paper (a year) and when to use it."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "models.md").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z0-9_]+)` \|.*$", text, flags=re.M)}
    for name in available_models():
        assert name in rows, name
        cells = [c.strip() for c in rows[name].strip("|").split("|")]
        assert len(cells) == 4 and re.search(r"(19|20)\d\d", cells[1]) and cells[3], rows[name]
