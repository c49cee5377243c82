"""Pipeline configuration: shipped pipelines, profiles, overrides with type checks, clear errors."""

from __future__ import annotations

import pytest
import yaml

from medseg.errors import ConfigError
from medseg.training.config import LossConfig
from medseg.training.loader import config_from_dict, find_pipeline, load_pipeline


@pytest.mark.parametrize(("name", "dims", "channels"), [("liver", 3, 1), ("liver-2d", 2, 5)])
def test_shipped_pipelines_load_and_round_trip(name, dims, channels):
    config = load_pipeline(name, device="cpu")
    assert config.spatial_dims == dims and len(config.training.patch_size) == dims
    assert config.model_config()["in_channels"] == channels and config.model_config()["out_channels"] == 3
    assert config.device == "cpu" and config.profiles == {}
    assert config_from_dict(yaml.safe_load(config.to_yaml())) == config


def test_cpu_profile_applies_and_flags_win():
    raw = yaml.safe_load(find_pipeline("liver").read_text())
    cpu = raw["profiles"]["cpu"]
    config = load_pipeline("liver", device="cpu")
    assert config.training.patch_size == tuple(cpu["training"]["patch_size"])
    assert config.model.base_filters == cpu["model"]["base_filters"]
    assert config.optimizer.lr == cpu["optimizer"]["lr"] != raw["optimizer"]["lr"]
    assert config.training.grad_clip_norm == raw["training"]["grad_clip_norm"]  # untouched by the profile
    assert config.loss.params == {**raw["loss"]["params"], **cpu["loss"]["params"]}  # merged, not replaced
    flagged = load_pipeline("liver", device="cpu", overrides=["training.epochs=3", "model.base_filters=4"])
    assert flagged.training.epochs == 3 and flagged.model.base_filters == 4


def test_override_values_are_parsed_and_converted():
    config = load_pipeline("liver", device="cpu", overrides=[
        "training.patch_size=[40, 40, 24]", "optimizer.lr=1", "optimizer.name=adamw", "training.grad_clip_norm=null",
        "loss={name: dice_focal, params: {gamma: 1.5}}",
    ])  # fmt: skip
    assert config.training.patch_size == (40, 40, 24)
    assert config.optimizer.lr == 1.0 and isinstance(config.optimizer.lr, float)
    assert config.training.grad_clip_norm is None
    assert config.loss == LossConfig(name="dice_focal", params={"gamma": 1.5})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.epohcs=3", r"unknown key training\.epohcs; valid keys: epochs"),
        ("trainig.epochs=3", "unknown section 'trainig'"),
        ("training.epochs=three", r"training\.epochs: expected an integer, got 'three'"),
        ("training.amp=1", r"training\.amp: expected true or false"),
        ("training.patch_size=[64, 64]", "3 positive entries"),
        ("training.epochs=0", r"training\.epochs must be >= 1"),
        ("optimizer.name=adam", "sgd or adamw"),
        ("model.depht=4", r"unknown key model\.depht; valid keys: name, spatial_dims, depth"),
        ("model.name=vnet", "unknown model 'vnet'"),
        ("loss=dice_cee", "unknown loss 'dice_cee'"),
        ("augmentation.params={flip_probb: 0.5}", r"unknown key augmentation\.flip_probb; valid keys in augmentation"),
        ("postprocessing.keep_largest=true", r"unknown key postprocessing\.keep_largest; valid keys: keep_largest"),
        ("training.context_slices=2", "2D models only"),
        ("noequals", "expected section.key=value"),
    ],
)
def test_bad_values_raise_config_error_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_pipeline("liver", device="cpu", overrides=[override])


def test_unknown_keys_in_a_yaml_file(tmp_path):
    raw = yaml.safe_load(find_pipeline("liver").read_text())
    raw["training"]["learning_rate"] = 0.1
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"unknown key training\.learning_rate; valid keys in training: epochs"):
        load_pipeline(path, device="cpu")
    raw["training"].pop("learning_rate")
    raw["extra_section"] = {}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="unknown key extra_section"):
        load_pipeline(path, device="cpu")
    raw.pop("extra_section")
    raw["profiles"]["tpu"] = {}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="unknown profile"):
        load_pipeline(path, device="cpu")


def test_unknown_pipeline_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="shipped pipelines: liver, liver-2d"):
        load_pipeline("kidney")
    with pytest.raises(ConfigError, match="pipeline file not found"):
        load_pipeline(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_pipeline(bad)
