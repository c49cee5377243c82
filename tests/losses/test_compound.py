"""Registry, compound losses with ramps, and deep supervision."""

from __future__ import annotations

import monai.losses as ml
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medseg.errors import ConfigError
from medseg.losses import (
    LOSSES,
    CompoundLoss,
    DeepSupervisionLoss,
    DiceLoss,
    build_loss,
    compute_maps,
    deep_supervision_weights,
    get_loss,
)

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


def test_compound_ramp_follows_epochs(make_case):
    logits, target = make_case((2, 9, 10), 3, seed=31)
    spec = [
        {"name": "dice", "params": {"include_background": False}},
        {"name": "boundary", "weight": 0.01, "ramp": {"per_epoch": 0.01, "max": 0.05}},
    ]
    loss = build_loss(spec)
    assert isinstance(loss, CompoundLoss)
    assert loss.required_maps == frozenset({"distance_map"})
    phi = torch.from_numpy(
        np.stack(
            [
                compute_maps(t.numpy(), ["distance_map"], num_classes=3, spacing_mm=(1, 1))["distance_map"]
                for t in target
            ]
        )
    )
    dice = DiceLoss(include_background=False)(logits, target)
    boundary = get_loss("boundary")(logits, target, distance_map=phi)
    for epoch, w in [(0, 0.01), (2, 0.03), (10, 0.05)]:
        loss.set_epoch(epoch)
        assert loss.weights()["boundary"] == pytest.approx(w)
        torch.testing.assert_close(loss(logits, target, distance_map=phi), dice + w * boundary)
    torch.testing.assert_close(loss.last_terms["dice"], dice)


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


def test_compound_rejects_none_reduction():
    with pytest.raises(ConfigError, match="reduction"):
        build_loss([{"name": "dice", "params": {"reduction": "none"}}, "ce"])


def test_compound_unions_required_maps_and_options():
    loss = build_loss(["border_ce", "boundary", {"name": "hausdorff", "params": {"spacing_mm": [1, 1, 1]}}])
    assert loss.required_maps == frozenset({"weight_map", "distance_map", "target_distance"})
    assert loss.map_options["weight_map"]["w0"] == 10.0


def test_deep_supervision_weights():
    assert deep_supervision_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])


def test_deep_supervision_downsamples_target_and_maps(make_case):
    gen = torch.Generator().manual_seed(33)
    target = torch.randint(0, 3, (2, 1, 16, 12, 8), generator=gen)
    outputs = [
        torch.randn((2, 3, 16 // 2**i, 12 // 2**i, 8 // 2**i), generator=gen, dtype=torch.float64) for i in range(3)
    ]
    weight_map = torch.rand((2, 1, 16, 12, 8), generator=gen)
    base = get_loss("border_ce")
    ds = DeepSupervisionLoss(base, 3)
    assert ds.required_maps == frozenset({"weight_map"})
    expected = 0.0
    for w, out in zip(deep_supervision_weights(3), outputs):
        s = out.shape[2:]
        t = F.interpolate(target.float(), size=s, mode="nearest").long()
        m = F.interpolate(weight_map, size=s, mode="nearest")
        ce = F.cross_entropy(out, t[:, 0], reduction="none")
        expected = expected + w * (ce * m[:, 0]).mean()
    torch.testing.assert_close(ds(outputs, target, weight_map=weight_map), expected.to(torch.float64))
    with pytest.raises(ValueError, match="3 outputs"):
        ds(outputs[:2], target, weight_map=weight_map)
