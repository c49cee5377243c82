"""Partial annotations (issue #30): every loss with ``ignore_index`` equals the loss of the annotated voxels
alone, checked against a direct computation on those voxels and against MONAI where it has the loss."""

from __future__ import annotations

import monai.losses as ml
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medseg.losses import (
    BorderCrossEntropyLoss,
    BoundaryLoss,
    CrossEntropyLoss,
    DeepSupervisionLoss,
    DiceLoss,
    FocalLoss,
    FocalTverskyLoss,
    HausdorffDTLoss,
    TverskyLoss,
    border_weight_map,
    distance_field,
    get_loss,
    signed_distance_map,
)

IGNORE = 3


def _partial(shape, classes=3, seed=0, share=0.4):
    """Logits (B, C, ...) and a target with about ``share`` of the voxels set to IGNORE."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn((shape[0], classes, *shape[1:]), generator=gen, dtype=torch.float64)
    target = torch.randint(0, classes, (shape[0], 1, *shape[1:]), generator=gen)
    hidden = torch.rand(target.shape, generator=gen, dtype=torch.float64) < share
    return logits, torch.where(hidden, torch.full_like(target, IGNORE), target)


def _annotated_only(logits, target):
    """The annotated voxels of a one-sample batch as a (1, C, N, 1) / (1, 1, N, 1) pair."""
    keep = (target != IGNORE).reshape(-1)
    flat = logits.reshape(logits.shape[1], -1)[:, keep]
    return flat[None, :, :, None], target.reshape(-1)[keep][None, None, :, None]


PER_VOXEL_AND_REGION = {
    "dice": lambda **k: DiceLoss(**k),
    "dice_no_bg": lambda **k: DiceLoss(include_background=False, **k),
    "tversky": lambda **k: TverskyLoss(alpha=0.3, beta=0.7, **k),
    "focal_tversky": lambda **k: FocalTverskyLoss(**k),
    "focal": lambda **k: FocalLoss(gamma=2.0, alpha=[0.2, 0.5, 0.3], **k),
    "ce": lambda **k: CrossEntropyLoss(class_weights=[0.2, 1.0, 3.0], **k),
    "ce_sigmoid": lambda **k: CrossEntropyLoss(activation="sigmoid", **k),
    "focal_sigmoid": lambda **k: FocalLoss(activation="sigmoid", alpha=0.25, **k),
    "dice_ce": lambda **k: get_loss("dice_ce", **k),
    "dice_focal": lambda **k: get_loss("dice_focal", **k),
}


@pytest.mark.parametrize("name", sorted(PER_VOXEL_AND_REGION))
@pytest.mark.parametrize("shape", [(1, 9, 11), (1, 6, 5, 7)])
def test_loss_with_ignore_equals_loss_on_annotated_voxels(name, shape):
    logits, target = _partial(shape, seed=len(name))
    make = PER_VOXEL_AND_REGION[name]
    ours = make(ignore_index=IGNORE)(logits, target)
    flat_logits, flat_target = _annotated_only(logits, target)
    expected = make()(flat_logits, flat_target)
    torch.testing.assert_close(ours, expected, atol=1e-10, rtol=0)
    changed = logits.clone()
    changed[(target == IGNORE).expand_as(logits)] = 50.0  # whatever is predicted where nobody annotated
    torch.testing.assert_close(make(ignore_index=IGNORE)(changed, target), ours, atol=1e-10, rtol=0)


@pytest.mark.parametrize("batch", [False, True])
def test_dice_with_ignore_equals_monai_masked_dice_and_a_hand_count(batch):
    logits, target = _partial((2, 8, 7, 5), seed=3)
    ours = DiceLoss(batch=batch, reduction="none", ignore_index=IGNORE)(logits, target)
    mask = (target != IGNORE).double()
    clean = torch.where(target == IGNORE, 0, target)
    # MONAI masks its input before any activation, so it is given probabilities and a one-hot target
    probs, onehot = torch.softmax(logits, 1), F.one_hot(clean[:, 0], 3).movedim(-1, 1).double()
    monai = ml.MaskedDiceLoss(batch=batch, reduction="none")(probs, onehot, mask=mask)
    torch.testing.assert_close(ours, monai.reshape(ours.shape), atol=1e-6, rtol=0)
    # the count by hand, sample 0, class 2: 1 - (2 tp + s) / (sum p + sum g + s) over annotated voxels
    if not batch:
        p = torch.softmax(logits, 1)[0, 2][target[0, 0] != IGNORE]
        g = (target[0, 0] == 2)[target[0, 0] != IGNORE].double()
        by_hand = 1 - (2 * (p * g).sum() + 1e-5) / (p.sum() + g.sum() + 1e-5)
        torch.testing.assert_close(ours[0, 2], by_hand, atol=1e-12, rtol=0)


def test_dice_ce_with_ignore_equals_monai_dice_ce_on_annotated_voxels():
    logits, target = _partial((1, 12, 10, 4), seed=5)
    ours = get_loss("dice_ce", ignore_index=IGNORE)(logits, target)
    flat_logits, flat_target = _annotated_only(logits, target)
    monai = ml.DiceCELoss(softmax=True, to_onehot_y=True)(flat_logits, flat_target)
    torch.testing.assert_close(ours, monai, atol=1e-6, rtol=0)
    tversky = TverskyLoss(alpha=0.3, beta=0.7, ignore_index=IGNORE)(logits, target)
    monai_t = ml.TverskyLoss(softmax=True, to_onehot_y=True, alpha=0.3, beta=0.7)(flat_logits, flat_target)
    torch.testing.assert_close(tversky, monai_t, atol=1e-6, rtol=0)


def test_ce_with_ignore_equals_torch_ignore_index_and_sum_and_none():
    logits, target = _partial((2, 7, 6), seed=7)
    ours = CrossEntropyLoss(ignore_index=IGNORE)(logits, target)
    torch.testing.assert_close(ours, F.cross_entropy(logits, target[:, 0], ignore_index=IGNORE))
    keep = target != IGNORE
    per_voxel = CrossEntropyLoss(ignore_index=IGNORE, reduction="none")(logits, target)
    assert (per_voxel[~keep] == 0).all()
    torch.testing.assert_close(per_voxel.sum(), CrossEntropyLoss(ignore_index=IGNORE, reduction="sum")(logits, target))
    torch.testing.assert_close(per_voxel.sum() / keep.sum(), ours)


@pytest.mark.parametrize("name", sorted(PER_VOXEL_AND_REGION))
def test_nothing_annotated_gives_zero_and_finite_gradients(name):
    logits = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    target = torch.full((2, 1, 5, 4), IGNORE)
    loss = PER_VOXEL_AND_REGION[name](ignore_index=IGNORE)(logits, target)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-9) and torch.isfinite(logits.grad).all()


def test_ignore_index_that_is_a_class_or_unknown_values_are_refused():
    logits, target = _partial((1, 4, 4), seed=1)
    with pytest.raises(ValueError, match="ignore_index=2 is a class label"):
        DiceLoss(ignore_index=2)(logits, target)
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 2\]"):
        DiceLoss(ignore_index=4)(logits, target)  # 3 is not declared: still an error
    with pytest.raises(ValueError, match="ignore_index"):
        CrossEntropyLoss(ignore_index=-1)


# ------------------------------------------------------------------------------------------------
# distance maps from annotated voxels, checked against brute force


def _brute_signed(labels: np.ndarray, c: int, spacing) -> np.ndarray:
    """Signed distance of class c among annotated voxels, by trying every pair."""
    coords = np.argwhere(np.ones(labels.shape, bool)) * np.asarray(spacing)
    flat = labels.reshape(-1)
    inside, other = flat == c, (flat != c) & (flat != IGNORE)
    out = np.zeros(flat.shape)
    if inside.any() and other.any():
        dist = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
        out[inside] = -dist[inside][:, other].min(1)
        out[other] = dist[other][:, inside].min(1)
    return out.reshape(labels.shape)


def _sparse_labels(seed=0, shape=(9, 8)):
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.int64)
    labels[2:7, 1:6] = 1
    labels[3:5, 2:4] = 2
    labels[rng.random(shape) < 0.35] = IGNORE
    labels[:, 6] = IGNORE  # a whole column not annotated
    return labels


def test_signed_distance_map_is_measured_between_annotated_voxels():
    labels, spacing = _sparse_labels(), (1.5, 0.7)
    sdm = signed_distance_map(labels, num_classes=3, spacing_mm=spacing, ignore_label=IGNORE)
    for c in range(3):
        np.testing.assert_allclose(sdm[c], _brute_signed(labels, c, spacing), atol=1e-5)
    assert (sdm[:, labels == IGNORE] == 0).all()
    dense = np.where(labels == IGNORE, 0, labels)
    np.testing.assert_array_equal(  # no unannotated voxel: the dense map
        signed_distance_map(dense, num_classes=3, spacing_mm=spacing, ignore_label=IGNORE),
        signed_distance_map(dense, num_classes=3, spacing_mm=spacing),
    )


def test_boundary_loss_with_ignore_is_the_mean_over_annotated_voxels():
    labels, spacing = _sparse_labels(1), (1.5, 0.7)
    target = torch.from_numpy(labels)[None, None]
    logits = torch.randn(1, 3, *labels.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ours = BoundaryLoss(spacing_mm=spacing, reduction="none", ignore_index=IGNORE)(logits, target)
    probs = torch.softmax(logits, 1)[0].numpy()
    keep = labels != IGNORE
    expected = [(probs[c] * _brute_signed(labels, c, spacing))[keep].mean() for c in (1, 2)]
    np.testing.assert_allclose(ours[0].numpy(), expected, atol=1e-5)


def test_hausdorff_loss_with_ignore_is_the_mean_over_annotated_voxels():
    labels, spacing = _sparse_labels(2), (1.5, 0.7)
    target = torch.from_numpy(labels)[None, None]
    logits = torch.randn(1, 3, *labels.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = HausdorffDTLoss(spacing_mm=spacing, reduction="none", ignore_index=IGNORE)(logits, target)
    probs = torch.softmax(logits, 1)[0]
    keep = labels != IGNORE
    for i, c in enumerate((1, 2)):
        d_p = distance_field(probs[c][None] > 0.5, spacing_mm=spacing)[0].double().numpy()  # dense prediction
        d_q = np.abs(_brute_signed(labels, c, spacing))
        q = (labels == c).astype(float)
        expected = ((probs[c].numpy() - q) ** 2 * (d_p**2 + d_q**2))[keep].mean()
        assert float(ours[0, i]) == pytest.approx(expected, abs=1e-4)


def test_border_weight_map_and_loss_with_ignore():
    labels = _sparse_labels(3, shape=(12, 10))
    weights = border_weight_map(labels, w0=10.0, sigma=2.0, ignore_label=IGNORE)
    keep = labels != IGNORE
    assert (weights[~keep] == 0).all()
    balance = border_weight_map(labels, w0=0.0, sigma=2.0, ignore_label=IGNORE)  # class balance alone
    assert balance[keep].mean() == pytest.approx(1.0)  # N / (K n_k) over the annotated voxels
    for value in (0, 1, 2):
        assert np.unique(balance[labels == value]).size == 1
    target = torch.from_numpy(labels)[None, None]
    logits = torch.randn(1, 3, *labels.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    weight_map = torch.from_numpy(weights)[None, None].double()
    ours = BorderCrossEntropyLoss(ignore_index=IGNORE)(logits, target, weight_map=weight_map)
    clean = torch.where(target == IGNORE, 0, target)[:, 0]
    ce = F.cross_entropy(logits, clean, reduction="none")[0].numpy()
    assert float(ours) == pytest.approx((ce * weights)[keep].mean(), abs=1e-10)
    fallback = BorderCrossEntropyLoss(w0=10.0, sigma=2.0, ignore_index=IGNORE)(logits, target)
    assert float(fallback) == pytest.approx(float(ours), abs=1e-6)


def test_deep_supervision_ignores_unannotated_voxels_at_every_scale():
    logits, target = _partial((1, 8, 8, 4), seed=11)
    low = torch.randn(1, 3, 4, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    outputs = [logits.clone().requires_grad_(), low.clone().requires_grad_()]
    loss = DeepSupervisionLoss(get_loss("dice_ce", ignore_index=IGNORE), 2)
    total = loss(outputs, target)
    total.backward()
    small = F.interpolate(target.float(), size=(4, 4, 2), mode="nearest").long()
    expected = 2 / 3 * get_loss("dice_ce")(*_annotated_only(logits, target)) + 1 / 3 * get_loss("dice_ce")(
        *_annotated_only(low, small)
    )
    torch.testing.assert_close(total, expected, atol=1e-10, rtol=0)
    for out, t in zip(outputs, (target, small)):
        grad = out.grad[(t == IGNORE).expand_as(out)]
        assert grad.numel() and (grad == 0).all()  # nothing learnt where nobody annotated


def test_every_registered_loss_takes_ignore_index():
    from medseg.losses import LOSSES, loss_parameters

    missing = [name for name in LOSSES if name != "compound" and "ignore_index" not in loss_parameters(name)]
    assert not missing, missing
