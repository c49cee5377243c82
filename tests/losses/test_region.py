"""Dice, Tversky and focal Tversky: equality with MONAI and hand-computed values."""

from __future__ import annotations

import monai.losses as ml
import pytest
import torch
from monai.networks.utils import one_hot

from medseg.losses import DiceLoss, FocalTverskyLoss, TverskyLoss

SHAPES = [((2, 12, 10), 3), ((2, 8, 9, 7), 4), ((3, 6, 5, 4), 2)]


@pytest.mark.parametrize(("shape", "classes"), SHAPES)
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("batch", [False, True])
def test_dice_equals_monai_softmax(make_case, shape, classes, include_background, batch):
    logits, target = make_case(shape, classes, seed=1)
    ours = DiceLoss(include_background=include_background, batch=batch, reduction="none")(logits, target)
    ref = ml.DiceLoss(
        softmax=True, to_onehot_y=True, include_background=include_background, batch=batch, reduction="none"
    )
    expected = ref(logits, target).reshape(ours.shape)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("shape", "classes"), SHAPES)
def test_dice_equals_monai_sigmoid_and_weights(make_case, shape, classes):
    logits, target = make_case(shape, classes, seed=2)
    weights = [0.5 + i for i in range(classes)]
    ours = DiceLoss(activation="sigmoid", class_weights=weights)(logits, target)
    ref = ml.DiceLoss(sigmoid=True, to_onehot_y=True, weight=weights)(logits, target)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_dice_single_sigmoid_channel_is_foreground(make_case):
    logits, target = make_case((2, 10, 11), 1, seed=3)
    target = torch.randint(0, 2, target.shape, generator=torch.Generator().manual_seed(3))
    ours = DiceLoss(activation="sigmoid")(logits, target)
    ref = ml.DiceLoss(sigmoid=True)(logits, target.double())
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("shape", "classes"), SHAPES)
@pytest.mark.parametrize(("alpha", "beta"), [(0.3, 0.7), (0.5, 0.5), (0.9, 0.1)])
def test_tversky_equals_monai(make_case, shape, classes, alpha, beta):
    logits, target = make_case(shape, classes, seed=4)
    ours = TverskyLoss(alpha=alpha, beta=beta, include_background=False)(logits, target)
    ref = ml.TverskyLoss(softmax=True, to_onehot_y=True, alpha=alpha, beta=beta, include_background=False)
    torch.testing.assert_close(ours, ref(logits, target), atol=1e-5, rtol=0)


def test_tversky_hand_computed():
    # one sample, 2 classes, 4 pixels; probabilities of class 1 chosen through the logits
    p1 = torch.tensor([0.9, 0.2, 0.6, 0.1], dtype=torch.float64)
    logits = torch.stack([torch.zeros(4, dtype=torch.float64), torch.log(p1 / (1 - p1))]).reshape(1, 2, 2, 2)
    target = torch.tensor([1, 1, 0, 0]).reshape(1, 1, 2, 2)
    tp, fp, fn = 0.9 + 0.2, 0.6 + 0.1, 0.1 + 0.8
    expected = 1 - tp / (tp + 0.3 * fp + 0.7 * fn)
    loss = TverskyLoss(include_background=False, smooth_nr=0, smooth_dr=0)(logits, target)
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_focal_tversky_is_power_of_tversky(make_case):
    logits, target = make_case((2, 8, 8, 6), 3, seed=5)
    tversky = TverskyLoss(reduction="none")(logits, target)
    focal = FocalTverskyLoss(gamma=0.75, reduction="none")(logits, target)
    torch.testing.assert_close(focal, tversky**0.75)


def test_empty_class_predicted_empty_gives_zero_not_nan():
    target = torch.zeros((1, 1, 6, 6), dtype=torch.long)
    logits = torch.zeros((1, 3, 6, 6))
    logits[:, 0] = 40.0  # everything predicted background
    loss = DiceLoss(include_background=False, reduction="none")(logits, target)
    assert torch.isfinite(loss).all()
    assert loss.abs().max().item() < 1e-3


def test_class_weights_length_checked(make_case):
    logits, target = make_case((1, 5, 5), 3, seed=6)
    with pytest.raises(ValueError, match="class_weights"):
        DiceLoss(class_weights=[1.0, 2.0])(logits, target)


@pytest.mark.parametrize("bad", [{"activation": "softmx"}, {"reduction": "avg"}])
def test_bad_arguments_name_the_argument(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        DiceLoss(**bad)


def test_dice_tracks_monai_one_hot(make_case):
    # the same loss from a one-hot target in MONAI
    logits, target = make_case((2, 7, 7, 7), 3, seed=7)
    ref = ml.DiceLoss(softmax=True)(logits, one_hot(target, 3))
    torch.testing.assert_close(DiceLoss()(logits, target), ref, atol=1e-5, rtol=0)
