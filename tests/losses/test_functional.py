"""The pure tensor functions behind the losses, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from medseg.losses._functional import (
    as_class_vector,
    check_choice,
    check_inputs,
    encode_target,
    focal_per_voxel,
    reduce_loss,
    select_channels,
    to_compute_dtype,
    tversky_per_class,
)


def test_encode_target_one_hot_and_binary():
    target = torch.tensor([[[[0, 2], [1, 2]]]])  # (1, 1, 2, 2)
    onehot = encode_target(target, 3, torch.float32)
    assert onehot.shape == (1, 3, 2, 2)
    assert onehot[0, :, 0, 1].tolist() == [0.0, 0.0, 1.0] and onehot[0, :, 1, 0].tolist() == [0.0, 1.0, 0.0]
    assert encode_target(target, 1, torch.float64).flatten().tolist() == [0.0, 1.0, 1.0, 1.0]  # foreground


def test_tversky_hand_computed():
    """One sample, one class, four voxels: p = (1, .5, .5, 0), y = (1, 1, 0, 0): tp 1.5, fp .5, fn .5."""
    probs = torch.tensor([1.0, 0.5, 0.5, 0.0]).reshape(1, 1, 2, 2)
    onehot = torch.tensor([1.0, 1.0, 0.0, 0.0]).reshape(1, 1, 2, 2)
    dice = tversky_per_class(probs, onehot, alpha=0.5, beta=0.5, smooth_nr=0.0, smooth_dr=0.0, batch=False)
    assert dice.item() == pytest.approx(1.5 / 2.0)  # 2 tp / (2 tp + fp + fn) = 3 / 4
    tversky = tversky_per_class(probs, onehot, alpha=0.3, beta=0.7, smooth_nr=1.0, smooth_dr=1.0, batch=False)
    assert tversky.item() == pytest.approx((1.5 + 1) / (1.5 + 0.15 + 0.35 + 1))
    two = torch.cat([probs, torch.zeros_like(probs)])  # second sample: empty prediction and target
    pooled = tversky_per_class(two, torch.cat([onehot, torch.zeros_like(onehot)]), alpha=0.5, beta=0.5,
                               smooth_nr=0.0, smooth_dr=1e-5, batch=True)
    assert pooled.shape == (1, 1) and pooled.item() == pytest.approx(1.5 / (2.0 + 1e-5))


def test_focal_reduces_to_cross_entropy_and_weights():
    logits = torch.tensor([[[[2.0]], [[0.0]]]])  # (1, 2, 1, 1)
    onehot = torch.tensor([[[[1.0]], [[0.0]]]])
    p_true = math.exp(2) / (math.exp(2) + 1)
    ce = focal_per_voxel(logits, onehot, activation="softmax", gamma=0.0, alpha=None)
    assert ce.shape == (1, 1, 1, 1) and ce.item() == pytest.approx(-math.log(p_true))
    focal = focal_per_voxel(logits, onehot, activation="softmax", gamma=2.0, alpha=[0.25, 0.75])
    assert focal.item() == pytest.approx(-0.25 * (1 - p_true) ** 2 * math.log(p_true), rel=1e-5)  # float32
    binary = focal_per_voxel(torch.tensor([[[[0.0]]]]), torch.tensor([[[[1.0]]]]), activation="sigmoid",
                             gamma=0.0, alpha=0.25)
    assert binary.item() == pytest.approx(0.25 * math.log(2))  # alpha weights the positive
    with pytest.raises(ValueError, match="3 per-class values given for 2 channels"):
        focal_per_voxel(logits, onehot, activation="softmax", gamma=0.0, alpha=[1.0, 1.0, 1.0])


def test_reduce_select_and_dtype():
    values = torch.tensor([[1.0, 3.0], [5.0, 7.0]])
    assert reduce_loss(values, "mean").item() == 4.0 and reduce_loss(values, "sum").item() == 16.0
    assert reduce_loss(values, "none") is values
    assert select_channels(values, include_background=False).tolist() == [[3.0], [7.0]]
    assert select_channels(values, include_background=True) is values
    assert select_channels(values[:, :1], include_background=False).shape == (2, 1)  # one channel kept
    assert to_compute_dtype(torch.zeros(1, dtype=torch.float16)).dtype == torch.float32
    assert to_compute_dtype(torch.zeros(1, dtype=torch.float64)).dtype == torch.float64


def test_argument_checks():
    assert check_choice("reduction", "sum", ("mean", "sum")) == "sum"
    with pytest.raises(ValueError, match=r"reduction='max' is not one of 'mean', 'sum'"):
        check_choice("reduction", "max", ("mean", "sum"))
    assert as_class_vector("weight", None) is None
    assert as_class_vector("weight", [1, 2]).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match=r"weight=\[1\.0, -1\.0\] must hold finite, non-negative"):
        as_class_vector("weight", [1.0, -1.0])


@pytest.mark.parametrize(("logits", "target", "activation", "match"), [
    ((1, 3, 4), (1, 1, 4), "softmax", r"logits must be \(B, C, H, W\)"),
    ((1, 3, 4, 4), (1, 2, 4, 4), "softmax", r"target must be \(B, 1, \*spatial\) = \(1, 1, 4, 4\)"),
    ((1, 1, 4, 4), (1, 1, 4, 4), "softmax", "needs at least 2 logit channels"),
])
def test_check_inputs_shapes(logits, target, activation, match):
    with pytest.raises(ValueError, match=match):
        check_inputs(torch.zeros(logits), torch.zeros(target, dtype=torch.long), activation=activation)


def test_check_inputs_label_values():
    logits = torch.zeros(1, 3, 2, 2)
    check_inputs(logits, torch.tensor([[[[0, 1], [2, 2]]]]), activation="softmax")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\] for 3 logit channel\(s\), got \[0, 3\]"):
        check_inputs(logits, torch.tensor([[[[0, 1], [3, 2]]]]), activation="softmax")
    with pytest.raises(ValueError, match="integer class labels"):
        check_inputs(logits, torch.full((1, 1, 2, 2), 0.5), activation="softmax")
    check_inputs(torch.zeros(1, 1, 2, 2), torch.tensor([[[[0, 1], [1, 0]]]]), activation="sigmoid")
