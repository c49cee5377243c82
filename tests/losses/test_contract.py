"""The contract every registered loss keeps: 2D and 3D, any class count, finite gradients, gradcheck,
minimum at the perfect prediction, larger for worse predictions, no NaN on all-background targets, AMP."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.losses import LOSSES, compute_maps, get_loss

NAMES = sorted(set(LOSSES) - {"compound"})
NONE_OK = {"dice", "tversky", "focal_tversky", "focal", "ce", "border_ce", "hausdorff", "boundary"}


def _loss(name: str, ndim: int, **params):
    if name == "hausdorff":
        params.setdefault("spacing_mm", (0.8, 1.5, 2.0)[:ndim])
    return get_loss(name, **params)


def _maps(loss, target: torch.Tensor, classes: int) -> dict[str, torch.Tensor]:
    spacing = (0.8, 1.5, 2.0)[: target.ndim - 2]
    per_sample = [
        compute_maps(t.numpy(), loss.required_maps, num_classes=classes, spacing_mm=spacing, options=loss.map_options)
        for t in target
    ]
    return {k: torch.from_numpy(np.stack([m[k] for m in per_sample])) for k in loss.required_maps}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("shape", "classes"), [((2, 12, 11), 2), ((2, 8, 7, 6), 4)])
def test_finite_gradients(make_case, name, shape, classes):
    logits, target = make_case(shape, classes, seed=40)
    logits.requires_grad_(True)
    loss = _loss(name, len(shape) - 1)
    value = loss(logits, target, **_maps(loss, target, classes))
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value)
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_perfect_prediction_is_minimum_and_worse_is_larger(blob_target, perfect, name, activation):
    classes = 3
    target = blob_target((10, 9, 8), classes)
    loss = _loss(name, 3, activation=activation)
    maps = _maps(loss, target, classes)
    best = perfect(target, classes)
    # mistakes on a growing set of voxels: the first fg block relabelled, then more voxels too
    wrong_small, wrong_big = target.clone(), target.clone()
    wrong_small[0, 0, 2:4, 2:5, 2:5] = 0
    wrong_big[0, 0, 2:5, 2:5, 2:5] = 0
    wrong_big[1, 0, 4:7, 4:7, 4:7] = 2
    values = [loss(perfect(t, classes), target, **maps).item() for t in (target, wrong_small, wrong_big)]
    assert values[0] < values[1] < values[2]
    if name != "boundary":  # the boundary loss's minimum is negative (tested in test_distance)
        assert values[0] == pytest.approx(0.0, abs=1e-4)
    gen = torch.Generator().manual_seed(41)
    for _ in range(3):
        random = 3 * torch.randn(best.shape, generator=gen, dtype=torch.float64)
        assert loss(random, target, **maps).item() > values[0]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_all_background_target_is_finite(make_case, name, activation):
    logits, _ = make_case((2, 7, 6, 5), 3, seed=42)
    target = torch.zeros((2, 1, 7, 6, 5), dtype=torch.long)
    logits.requires_grad_(True)
    loss = _loss(name, 3, activation=activation)
    value = loss(logits, target, **_maps(loss, target, 3))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_double(make_case, name):
    logits, target = make_case((1, 4, 3, 3), 3, seed=43)
    loss = _loss(name, 3)
    maps = _maps(loss, target, 3)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: loss(x, target, **maps), (logits,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_half_precision_is_computed_in_float32(make_case, name):
    logits, target = make_case((2, 9, 8, 5), 3, seed=44, dtype=torch.float32)
    loss = _loss(name, 3)
    maps = _maps(loss, target, 3)
    value = loss(logits.to(torch.bfloat16), target, **maps)
    assert value.dtype == torch.float32
    reference = loss(logits.to(torch.bfloat16).float(), target, **maps)
    torch.testing.assert_close(value, reference)


@pytest.mark.parametrize("name", sorted(NONE_OK))
def test_reductions_agree(make_case, name):
    logits, target = make_case((2, 6, 5, 4), 3, seed=45)
    maps = _maps(_loss(name, 3), target, 3)
    params = {"class_weights": None} if name == "ce" else {}
    none = _loss(name, 3, reduction="none", **params)(logits, target, **maps)
    assert none.shape[0] == 2 and none.ndim in (2, 5)
    torch.testing.assert_close(_loss(name, 3, reduction="sum")(logits, target, **maps), none.sum())
    torch.testing.assert_close(_loss(name, 3, reduction="mean")(logits, target, **maps), none.mean())


def test_mismatched_target_is_rejected(make_case):
    logits, target = make_case((2, 6, 5), 3, seed=46)
    with pytest.raises(ValueError, match="target"):
        get_loss("dice")(logits, target[:, :, :4])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        get_loss("dice")(logits, target + 1)
