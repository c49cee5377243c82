"""SegLoss, the base every loss shares: checked settings, the input contract, the compute dtype."""

from __future__ import annotations

import pytest
import torch

from medseg.losses.base import SegLoss


def test_settings_are_checked_and_shown():
    loss = SegLoss(activation="sigmoid", reduction="sum")
    assert (loss.activation, loss.reduction, dict(loss.map_options)) == ("sigmoid", "sum", {})
    assert loss.extra_repr() == "activation='sigmoid', reduction='sum'"
    assert loss.required_maps == frozenset() and loss.accepted_maps == frozenset()
    loss.set_epoch(3)  # no schedule: nothing changes
    with pytest.raises(ValueError, match=r"activation='relu' is not one of 'softmax', 'sigmoid'"):
        SegLoss(activation="relu")
    with pytest.raises(ValueError, match=r"reduction='max' is not one of 'mean', 'sum', 'none'"):
        SegLoss(reduction="max")


def test_prepare_checks_casts_and_encodes():
    logits = torch.zeros(1, 3, 2, 2, dtype=torch.float16)
    target = torch.tensor([[[[0, 1], [2, 1]]]])
    out, onehot, mask = SegLoss()._prepare(logits, target)
    assert mask is None
    assert out.dtype == torch.float32 and onehot.dtype == torch.float32  # AMP-safe compute dtype
    assert onehot[0, :, 1, 0].tolist() == [0.0, 0.0, 1.0] and onehot.sum().item() == 4.0
    with pytest.raises(ValueError, match="target labels must lie in"):
        SegLoss()._prepare(logits, target + 1)
