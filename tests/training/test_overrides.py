"""--set overrides and device profiles on the raw pipeline mapping."""

from __future__ import annotations

import pytest

from medseg.errors import ConfigError
from medseg.training.overrides import apply_overrides, merge_profile, parse_override


def test_parse_override_values_are_yaml():
    assert parse_override("training.epochs=3") == (["training", "epochs"], 3)
    assert parse_override("training.patch_size=[64, 64, 32]") == (["training", "patch_size"], [64, 64, 32])
    assert parse_override("optimizer.name=adamw") == (["optimizer", "name"], "adamw")
    assert parse_override("postprocessing.tumor_inside_liver_dilation_mm=") == (
        ["postprocessing", "tumor_inside_liver_dilation_mm"], None)
    assert parse_override("data.root=a: b: c")[1] == "a: b: c"  # not valid YAML: kept as the string
    with pytest.raises(ConfigError, match=r"--set 'training\.epochs': expected section\.key=value"):
        parse_override("training.epochs")


def test_apply_overrides_copies_and_nests():
    raw = {"training": {"epochs": 10, "batch_size": 2}}
    out = apply_overrides(raw, ["training.epochs=3", "optimizer.lr=0.1"])
    assert out == {"training": {"epochs": 3, "batch_size": 2}, "optimizer": {"lr": 0.1}}
    assert raw == {"training": {"epochs": 10, "batch_size": 2}}  # the input is not modified
    with pytest.raises(ConfigError, match=r"unknown section 'trainin'; valid: .*training"):
        apply_overrides(raw, ["trainin.epochs=3"])
    with pytest.raises(ConfigError, match=r"unknown key training\.epoch; valid keys: .*epochs"):
        apply_overrides(raw, ["training.epoch=3"])


def test_merge_profile_merges_sections_key_by_key():
    raw = {"training": {"epochs": 10, "batch_size": 2}, "model": {"base_filters": 32}}
    profiles = {"cpu": {"training": {"epochs": 2}}, "cuda": None}
    assert merge_profile(raw, profiles, "cpu") == {"training": {"epochs": 2, "batch_size": 2},
                                                   "model": {"base_filters": 32}}
    assert merge_profile(raw, profiles, "cuda") == raw and merge_profile(raw, {}, "cpu") == raw
    with pytest.raises(ConfigError, match=r"profiles\.cpu: expected a mapping of sections, got \[1\]"):
        merge_profile(raw, {"cpu": [1]}, "cpu")
    with pytest.raises(ConfigError, match=r"profiles\.cpu may not set device or profiles"):
        merge_profile(raw, {"cpu": {"device": "cuda"}}, "cpu")


def test_a_section_given_a_mapping_is_merged_key_by_key_and_a_scalar_refused():
    """Issue #29.11: ``training={epochs: 2}`` replaced the section (the CPU profile's patch size lost);
    ``training=5`` and ``model={}`` were accepted."""
    from medseg.training.loader import load_pipeline

    raw = {"training": {"epochs": 10, "batch_size": 2}}
    assert apply_overrides(raw, ["training={epochs: 3}"]) == {"training": {"epochs": 3, "batch_size": 2}}
    with pytest.raises(ConfigError, match=r"unknown key training\.epoch;"):
        apply_overrides(raw, ["training={epoch: 3}"])  # keys inside the mapping are checked like section.key
    with pytest.raises(ConfigError, match=r"--set 'training=5': training is a section"):
        apply_overrides(raw, ["training=5"])
    with pytest.raises(ConfigError, match=r"--set 'model=\{\}': an empty mapping sets nothing"):
        apply_overrides(raw, ["model={}"])
    plain = load_pipeline("liver", device="cpu")
    merged = load_pipeline("liver", device="cpu", overrides=["training={epochs: 2}"])
    assert merged.training.epochs == 2
    assert merged.training.patch_size == plain.training.patch_size  # the CPU profile's, not the file's 128^3
    assert merged.model == plain.model
