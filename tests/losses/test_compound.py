"""Compound losses with ramps, and deep supervision (the registry: test_registry.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medseg.errors import ConfigError
from medseg.losses import (
    CompoundLoss,
    DeepSupervisionLoss,
    DiceLoss,
    build_loss,
    compute_maps,
    deep_supervision_weights,
    get_loss,
)


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
