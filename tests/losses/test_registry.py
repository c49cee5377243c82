"""The loss registry: names, parameters, build_loss forms, one-line config errors."""

from __future__ import annotations

import monai.losses as ml
import pytest
import torch
import torch.nn.functional as F

from medseg.errors import ConfigError
from medseg.losses import LOSSES, build_loss, get_loss

CONTRACT_NAMES = ["dice", "tversky", "focal", "ce", "border_ce", "hausdorff", "boundary", "dice_ce"]


def test_contract_names_registered():
    assert set(CONTRACT_NAMES) <= set(LOSSES)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError, match=r"valid names: .*dice_ce"):
        get_loss("dicece")


def test_unknown_parameter_lists_valid_parameters():
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['gama'\]; valid: .*gamma"):
        get_loss("focal", gama=2)


def test_missing_spacing_and_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="spacing_mm"):
        get_loss("hausdorff")
    with pytest.raises(ConfigError, match="activation"):
        get_loss("dice", activation="relu")


def test_dice_ce_equals_monai(make_case):
    logits, target = make_case((2, 8, 7, 6), 3, seed=30)
    ours = get_loss("dice_ce", ce_weight=0.5)(logits, target)
    ref = ml.DiceCELoss(softmax=True, to_onehot_y=True, lambda_ce=0.5)(logits, target)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-6)


def test_build_loss_forms(make_case):
    logits, target = make_case((1, 6, 7), 2, seed=32)
    expected = F.cross_entropy(logits, target[:, 0])
    torch.testing.assert_close(build_loss("ce")(logits, target), expected)
    torch.testing.assert_close(build_loss({"name": "focal", "params": {"gamma": 0.0}})(logits, target), expected)
    torch.testing.assert_close(build_loss({"name": "ce", "weight": 2.0})(logits, target), 2 * expected)
    with pytest.raises(ConfigError, match="unknown key"):
        build_loss([{"name": "ce", "wieght": 2.0}])
    with pytest.raises(ConfigError, match="ramp"):
        build_loss([{"name": "ce", "ramp": {"per_epoc": 1}}])


def test_dice_ce_is_a_frozen_settings_object_with_its_keywords():
    import dataclasses

    from medseg.losses.registry import DiceCE, loss_parameters

    params = loss_parameters("dice_ce")
    assert list(params) == ["activation", "include_background", "batch", "smooth_nr", "smooth_dr", "class_weights",
                            "dice_weight", "ce_weight", "ignore_index"]
    assert params["ce_weight"].default == 1.0 and params["ignore_index"].default is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        DiceCE().ce_weight = 2.0  # type: ignore[misc]
    loss = get_loss("dice_ce", dice_weight=0.25, ce_weight=0.5)
    assert [(t.name, t.weight) for t in loss.terms] == [("dice", 0.25), ("ce", 0.5)]
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['gamma'\]; valid: .*ce_weight"):
        get_loss("dice_ce", gamma=2.0)
