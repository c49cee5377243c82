"""Checkpoints written before the backbone settings object (issue #25) still build the identical network.

``data/legacy_models.pt`` was written by :func:`write_fixture` at commit fcea80f (the builders took the
eleven ``model.*`` keywords each): for every registered network of that time, a 2D and a 3D (anisotropic
strides, group or batch norm, deep supervision, dropout) ``model_config``, the name and shape of every
state-dict entry, a fixed input and the eval-mode output with weights set by :func:`fill_weights` (a function
of the entry names alone, so the file holds no weights). Today's ``build_model`` of the same dict must have
the same entries and, with the same weights, give the same output.

Regenerate only from that commit: ``python tests/models/test_legacy_checkpoints.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medseg.models import build_model

FIXTURE = Path(__file__).with_name("data") / "legacy_models.pt"
NAMES = ["unet", "resunet", "attention_unet", "fcn32s", "fcn16s", "fcn8s", "segnet", "deeplabv3plus"]
EXTRA_3D = {"deeplabv3plus": {"aspp_rates": [[2, 2, 1], 3], "norm": "batch"}}  # group norm: its width-3 reduction fails


def legacy_configs() -> list[dict]:
    out = []
    for name in NAMES:
        out.append({"name": name, "spatial_dims": 2, "in_channels": 2, "out_channels": 3, "depth": 3,
                    "base_filters": 4})  # fmt: skip
        out.append({"name": name, "spatial_dims": 3, "in_channels": 1, "out_channels": 2, "depth": 3,
                    "base_filters": 8, "max_filters": 8, "norm": "group", "strides": [1, [2, 2, 1], 2],
                    "deep_supervision": True, "deep_supervision_heads": 1, "dropout": 0.1,
                    **EXTRA_3D.get(name, {})})  # fmt: skip
    return out


def fill_weights(model: torch.nn.Module) -> None:
    """Set every floating-point entry of the state dict from a generator seeded once, in name order."""
    generator = torch.Generator().manual_seed(0)
    state = model.state_dict()
    filled = {}
    for key in sorted(state):
        value = state[key]
        if value.is_floating_point():
            value = 0.2 * torch.randn(value.shape, generator=generator)
            if key.endswith("running_var"):
                value = value.abs() + 0.5
        filled[key] = value
    model.load_state_dict(filled)


def _run(config: dict, x: torch.Tensor) -> tuple[dict, torch.Tensor]:
    model = build_model(config).eval()
    fill_weights(model)
    with torch.no_grad():
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}, model(x)


def write_fixture() -> None:
    entries = []
    torch.manual_seed(0)
    for config in legacy_configs():
        x = torch.randn(1, config["in_channels"], *([9, 7, 5][: config["spatial_dims"]]))
        shapes, y = _run(config, x)
        entries.append({"model_config": config, "shapes": [[k, list(s)] for k, s in shapes.items()],
                        "input": x, "output": y})  # fmt: skip
    FIXTURE.parent.mkdir(exist_ok=True)
    torch.save(entries, FIXTURE)


@pytest.fixture(scope="module")
def legacy():
    return torch.load(FIXTURE, weights_only=True)


def test_fixture_covers_every_model_of_its_time(legacy):
    assert sorted({(e["model_config"]["name"], e["model_config"]["spatial_dims"]) for e in legacy}) == sorted(
        (n, d) for n in NAMES for d in (2, 3)
    )


@pytest.mark.parametrize("index", range(2 * len(NAMES)))
def test_legacy_config_builds_the_same_network(legacy, index):
    entry = legacy[index]
    shapes, y = _run(entry["model_config"], entry["input"])
    assert list(shapes) == [k for k, _ in entry["shapes"]]  # same names, same order
    assert [list(s) for s in shapes.values()] == [s for _, s in entry["shapes"]]
    torch.testing.assert_close(y, entry["output"], rtol=1e-5, atol=1e-5)


if __name__ == "__main__":
    write_fixture()
