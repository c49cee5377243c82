"""BackboneSettings: the one validator of the shared model keys (issue #25), and the registry's use of it."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from medseg.errors import ConfigError
from medseg.models import BackboneSettings, available_models, build_model, model_parameters, model_settings
from medseg.models.registry import _REGISTRY
from medseg.models.settings import SETTINGS_KEYS
from medseg.training.config import ModelConfig

BASE = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"spatial_dims": 1}, "model.spatial_dims must be 2 or 3, got 1"),
        ({"in_channels": 0}, "model.in_channels must be a positive integer, got 0"),
        ({"out_channels": 2.0}, "model.out_channels must be a positive integer, got 2.0"),
        ({"depth": "4"}, "model.depth must be an integer >= 1, got '4'"),
        ({"base_filters": True}, "model.base_filters must be an integer >= 1, got True"),
        ({"base_filters": 16, "max_filters": 8}, "model.max_filters must be >= model.base_filters (16) or null, got 8"),
        ({"norm": "layer"}, "model.norm must be one of instance, batch, group, got 'layer'"),
        ({"norm": "group", "base_filters": 8, "max_filters": 12}, "multiples of 8 for group norm, got 8 and 12"),
        ({"kernel_size": 4}, "model.kernel_size must be an odd positive integer, got 4"),
        ({"dropout": 1.0}, "model.dropout must be in [0, 1), got 1.0"),
        ({"dropout": "0.1"}, "model.dropout must be in [0, 1), got '0.1'"),
        ({"depth": 3, "strides": [1, 2]}, "model.strides needs 3 entries (one per level of model.depth=3), got 2"),
        ({"depth": 3, "strides": [1, [2, 0, 2], 2]}, "model.strides[1] must be a positive integer or 3 of them"),
        ({"depth": 3, "strides": "122"}, "model.strides must be a list of 3 entries or null"),
        ({"deep_supervision": "yes"}, "model.deep_supervision must be true or false, got 'yes'"),
        ({"deep_supervision_heads": 0}, "model.deep_supervision_heads must be a positive integer or null, got 0"),
    ],
)
def test_each_bad_value_names_its_key(change, message):
    with pytest.raises(ConfigError) as raised:
        BackboneSettings(**{**BASE, **change})
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_settings_are_frozen_and_resolve_strides_filters_norm():
    s = BackboneSettings(**BASE, depth=4, base_filters=16, max_filters=48, strides=[1, [2, 2, 1], 2, [2, 2, 1]])
    assert s.strides == (1, (2, 2, 1), 2, (2, 2, 1))  # lists become tuples
    assert s.level_strides == ((1, 1, 1), (2, 2, 1), (2, 2, 2), (2, 2, 1))
    assert s.filters == (16, 32, 48, 48)
    assert s.norm_name == ("INSTANCE", {"affine": True})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.depth = 5  # type: ignore[misc]
    assert BackboneSettings(spatial_dims=2, in_channels=1, out_channels=2).filters == (32, 64, 128, 256, 512)
    assert BackboneSettings(**BASE, depth=6).filters[-1] == 320  # nnU-Net's 3D cap


def test_heads_default_to_all_and_are_bounded():
    s = BackboneSettings(**BASE, deep_supervision=True)
    assert s.heads("unet", max_heads=3) == 3
    assert BackboneSettings(**BASE, deep_supervision=True, deep_supervision_heads=2).heads("x", max_heads=3) == 2
    assert BackboneSettings(**BASE, deep_supervision_heads=2).heads("x", max_heads=3) == 0  # no deep supervision
    with pytest.raises(ConfigError, match=r"model.deep_supervision_heads must be in 1..1 for fcn32s with depth 5"):
        BackboneSettings(**BASE, deep_supervision=True, deep_supervision_heads=2).heads("fcn32s", max_heads=1)


@pytest.mark.parametrize("name", sorted(_REGISTRY))
def test_every_builder_takes_the_settings_and_at_most_eight_parameters(name):
    parameters = list(inspect.signature(_REGISTRY[name][0]).parameters.values())
    assert parameters[0].name == "settings" and len(parameters) <= 8
    assert not set(SETTINGS_KEYS) & {p.name for p in parameters[1:]}  # shared keys only in the settings


def test_model_settings_splits_shared_keys_from_own_options_with_the_models_defaults():
    settings, options = model_settings({"name": "deeplabv3plus", **BASE, "base_filters": 8, "aspp_rates": [2]})
    assert (settings.depth, settings.base_filters) == (6, 8)  # deeplab's registered default depth
    assert options == {"aspp_rates": [2]}
    assert model_settings({"name": "unet", **BASE})[0].depth == 5
    assert model_parameters("fcn8s")["depth"] == 6 and "aspp_rates" in model_parameters("deeplabv3plus")


@pytest.mark.parametrize(("name", "smallest"), [("unet", 3), ("fcn8s", 3), ("fcn16s", 2), ("segnet", 2)])
def test_the_smallest_depth_is_checked_before_the_other_keys(name, smallest):
    """depth 1 with strides for 4 levels: the depth is named, as the architecture's rule."""
    with pytest.raises(ConfigError, match=rf"model.depth must be an integer >= {smallest} for {name}, got 1"):
        build_model({"name": name, **BASE, "depth": 1, "strides": [1, 2, 2, 2]})


def test_model_config_fields_are_the_settings_keys():
    """training's ModelConfig spells the same keys (None: the model's default), validated by the settings."""
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    assert fields - {"name", "options"} == set(SETTINGS_KEYS) - {"in_channels", "out_channels"}
    assert set(available_models()) >= {"unet", "fcn8s", "segnet", "deeplabv3plus"}


@pytest.mark.parametrize(
    ("override", "message"),
    [("model.norm=layer", "model.norm must be one of instance, batch, group, got 'layer'"),
     ("model.kernel_size=4", "model.kernel_size must be an odd positive integer, got 4"),
     ("model.deep_supervision_heads=0", "model.deep_supervision_heads must be a positive integer or null, got 0"),
     ("model.max_filters=4", "model.max_filters must be >= model.base_filters"),
     ("model.name=gcn", None), ("model.name=pspnet", None)],
)  # fmt: skip
def test_pipeline_model_section_is_checked_by_the_settings_object(override, message):
    """The pipeline rules build BackboneSettings: a bad value stops load_pipeline with the settings' own
    message (before any data is read); a good one gives the settings the network is built from."""
    from medseg.training.loader import load_pipeline

    if message is not None:
        with pytest.raises(ConfigError) as raised:
            load_pipeline("liver", device="cpu", overrides=[override])
        assert message in str(raised.value)
        return
    config = load_pipeline("liver", device="cpu", overrides=[override])
    settings, _ = model_settings(config.model_config())
    assert (settings.base_filters, settings.depth, settings.out_channels) == (8, 4, 3)  # the CPU profile's
