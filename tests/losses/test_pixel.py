"""Cross-entropy, U-Net border cross-entropy and focal loss against torch, MONAI and hand calculations."""

from __future__ import annotations

import monai.losses as ml
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medseg.losses import BorderCrossEntropyLoss, CrossEntropyLoss, FocalLoss, border_weight_map

SHAPES = [((2, 12, 10), 3), ((2, 8, 9, 7), 4), ((3, 6, 5, 4), 2)]


@pytest.mark.parametrize(("shape", "classes"), SHAPES)
def test_ce_equals_torch_with_class_weights(make_case, shape, classes):
    logits, target = make_case(shape, classes, seed=10)
    weights = torch.linspace(0.5, 2.0, classes, dtype=torch.float64)
    ours = CrossEntropyLoss(class_weights=weights.tolist())(logits, target)
    torch.testing.assert_close(ours, F.cross_entropy(logits, target[:, 0], weight=weights))
    per_voxel = CrossEntropyLoss(reduction="none")(logits, target)
    assert per_voxel.shape == target.shape
    torch.testing.assert_close(per_voxel[:, 0], F.cross_entropy(logits, target[:, 0], reduction="none"))


@pytest.mark.parametrize(("shape", "classes"), SHAPES)
def test_focal_equals_monai_times_classes(make_case, shape, classes):
    # MONAI averages over classes as well as voxels; ours sums over classes (Lin's per-voxel loss)
    logits, target = make_case(shape, classes, seed=11)
    alpha = [0.1 + 0.2 * i for i in range(classes)]
    ours = FocalLoss(gamma=2.0, alpha=alpha)(logits, target)
    ref = ml.FocalLoss(use_softmax=True, to_onehot_y=True, gamma=2.0, alpha=alpha)(logits, target)
    torch.testing.assert_close(ours, classes * ref.double(), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("shape", "classes"), SHAPES)
def test_sigmoid_focal_equals_monai(make_case, shape, classes):
    logits, target = make_case(shape, classes, seed=12)
    ours = FocalLoss(activation="sigmoid", gamma=1.5, alpha=0.25)(logits, target)
    ref = ml.FocalLoss(use_softmax=False, to_onehot_y=True, gamma=1.5, alpha=0.25)(logits, target)
    torch.testing.assert_close(ours, classes * ref.double(), atol=1e-5, rtol=0)


def test_focal_gamma_zero_is_cross_entropy(make_case):
    logits, target = make_case((2, 9, 8, 5), 3, seed=13)
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, target), F.cross_entropy(logits, target[:, 0]))


def test_focal_hand_computed_voxel():
    p = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    logits = torch.log(p).reshape(1, 3, 1, 1)
    target = torch.zeros((1, 1, 1, 1), dtype=torch.long)
    expected = -0.5 * (1 - 0.7) ** 2 * np.log(0.7)
    assert FocalLoss(alpha=[0.5, 1.0, 1.0])(logits, target).item() == pytest.approx(expected, rel=1e-12)


def test_softmax_focal_needs_per_class_alpha():
    with pytest.raises(ValueError, match="alpha"):
        FocalLoss(alpha=0.25)


def test_border_ce_is_weighted_mean_of_ce(make_case):
    logits, target = make_case((2, 16, 14), 3, seed=14)
    maps = np.stack([border_weight_map(t.numpy()) for t in target[:, 0]])[:, None]
    weight_map = torch.from_numpy(maps)
    ours = BorderCrossEntropyLoss()(logits, target, weight_map=weight_map)
    expected = (F.cross_entropy(logits, target[:, 0], reduction="none") * weight_map[:, 0]).mean()
    torch.testing.assert_close(ours, expected.to(ours))
    # without a precomputed map it is computed from the target: same value
    torch.testing.assert_close(BorderCrossEntropyLoss()(logits, target), ours)


def test_border_ce_with_unit_map_is_ce(make_case):
    logits, target = make_case((2, 6, 7, 5), 2, seed=15)
    ours = BorderCrossEntropyLoss()(logits, target, weight_map=torch.ones(target.shape))
    torch.testing.assert_close(ours, F.cross_entropy(logits, target[:, 0]))


def test_border_ce_rejects_misshaped_map(make_case):
    logits, target = make_case((2, 6, 7), 2, seed=16)
    with pytest.raises(ValueError, match="weight_map"):
        BorderCrossEntropyLoss()(logits, target, weight_map=torch.ones((2, 2, 6, 7)))


def test_border_ce_map_options_reach_compute_maps():
    loss = BorderCrossEntropyLoss(w0=5.0, sigma_mm=3.0)
    assert loss.map_options == {"weight_map": {"w0": 5.0, "class_weights": "balanced", "sigma_mm": 3.0}}
    assert loss.required_maps == frozenset({"weight_map"})
