"""Hausdorff DT and boundary losses: MONAI equality at unit spacing, brute-force mm distances otherwise."""

from __future__ import annotations

import monai.losses as ml
import numpy as np
import pytest
import torch
from monai.networks.utils import one_hot
from scipy import ndimage

from medseg.losses import BoundaryLoss, HausdorffDTLoss, compute_maps, distance_field, signed_distance_map
from medseg.losses.distance import _squared_edt_torch

SHAPES = [((2, 12, 10), 3), ((2, 8, 9, 7), 4), ((2, 6, 5, 4), 2)]


@pytest.mark.parametrize(("shape", "classes"), SHAPES)
@pytest.mark.parametrize("include_background", [True, False])
def test_hausdorff_equals_monai_at_unit_spacing(make_case, shape, classes, include_background):
    logits, target = make_case(shape, classes, seed=20)
    spacing = (1.0,) * (len(shape) - 1)
    ours = HausdorffDTLoss(spacing_mm=spacing, include_background=include_background)(logits, target)
    ref = ml.HausdorffDTLoss(softmax=True, to_onehot_y=True, include_background=include_background)(logits, target)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-6)


def test_hausdorff_sigmoid_equals_monai(make_case):
    logits, target = make_case((2, 9, 8, 6), 3, seed=21)
    ours = HausdorffDTLoss(spacing_mm=(1.0, 1.0, 1.0), activation="sigmoid", alpha=1.5, include_background=True)(
        logits, target
    )
    ref = ml.HausdorffDTLoss(sigmoid=True, alpha=1.5, include_background=True)(logits, one_hot(target, 3))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-6)


def _brute_distance_field(mask: np.ndarray, spacing) -> np.ndarray:
    """Distance from each pixel to the nearest pixel on the other side, by explicit pairwise distances."""
    if mask.all() or not mask.any():
        return np.zeros(mask.shape)
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(mask.shape, spacing)], indexing="ij"), -1)
    out = np.zeros(mask.shape)
    for inside in (True, False):
        src, dst = grid[mask == inside], grid[mask != inside]
        out[mask == inside] = np.linalg.norm(src[:, None] - dst[None], axis=-1).min(1)
    return out


def test_hausdorff_in_mm_matches_brute_force(make_case):
    logits, target = make_case((2, 9, 11), 3, seed=22)
    spacing = (0.7, 2.0)
    ours = HausdorffDTLoss(spacing_mm=spacing, include_background=True, reduction="none")(logits, target)
    probs = torch.softmax(logits, 1).numpy()
    onehot = one_hot(target, 3).numpy()
    expected = np.zeros((2, 3))
    for b in range(2):
        for c in range(3):
            dp = _brute_distance_field(probs[b, c] > 0.5, spacing)
            dq = _brute_distance_field(onehot[b, c] > 0.5, spacing)
            expected[b, c] = ((probs[b, c] - onehot[b, c]) ** 2 * (dp**2 + dq**2)).mean()
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-5)


def test_hausdorff_precomputed_target_distance_gives_same_value(make_case):
    logits, target = make_case((2, 7, 8, 6), 3, seed=23)
    spacing = (1.2, 0.9, 3.0)
    maps = [compute_maps(t.numpy(), ["target_distance"], num_classes=3, spacing_mm=spacing) for t in target]
    td = torch.from_numpy(np.stack([m["target_distance"] for m in maps]))
    loss = HausdorffDTLoss(spacing_mm=spacing)
    torch.testing.assert_close(loss(logits, target, target_distance=td), loss(logits, target))


def test_torch_distance_transform_equals_scipy():
    gen = np.random.default_rng(0)
    masks = ndimage.binary_opening(gen.random((3, 14, 11, 9)) > 0.55, structure=np.ones((1, 2, 2, 2)))
    spacing = (0.8, 1.7, 3.1)
    ours = _squared_edt_torch(torch.from_numpy(masks), spacing).sqrt().numpy()
    for m, o in zip(masks, ours):
        np.testing.assert_allclose(o, ndimage.distance_transform_edt(~m, sampling=spacing), rtol=1e-5, atol=1e-5)


def test_distance_field_torch_backend_equals_scipy():
    gen = np.random.default_rng(2)
    masks = torch.from_numpy(gen.random((3, 13, 10, 7)) > 0.6)
    masks[2] = False  # an empty mask gives zeros
    spacing = (0.8, 1.1, 2.5)
    scipy_field = distance_field(masks, spacing_mm=spacing, backend="scipy")
    torch.testing.assert_close(distance_field(masks, spacing_mm=spacing, backend="torch"), scipy_field)
    m = masks[0].numpy()
    expected = ndimage.distance_transform_edt(m, sampling=spacing) + ndimage.distance_transform_edt(
        ~m, sampling=spacing
    )
    np.testing.assert_allclose(scipy_field[0].numpy(), expected, rtol=1e-6)
    assert scipy_field[2].abs().max() == 0


@pytest.mark.gpu
def test_distance_field_on_gpu_equals_cpu():
    gen = np.random.default_rng(1)
    masks = torch.from_numpy(gen.random((4, 40, 33, 21)) > 0.6)
    spacing = (0.8, 0.8, 2.5)
    cpu = distance_field(masks, spacing_mm=spacing)
    gpu = distance_field(masks.cuda(), spacing_mm=spacing).cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize(("shape", "classes"), SHAPES)
def test_boundary_relates_to_monai_by_one_voxel_shift(make_case, shape, classes):
    # MONAI's map is ours + 1 inside each region (inner boundary layer at 0); at unit spacing
    # ours = MONAI - mean(p * onehot) per sample and class
    logits, target = make_case(shape, classes, seed=24)
    spacing = (1.0,) * (len(shape) - 1)
    ours = BoundaryLoss(spacing_mm=spacing, include_background=True, reduction="none")(logits, target)
    ref = ml.BoundaryLoss(softmax=True, to_onehot_y=True, reduction="none")(logits, target).reshape(ours.shape)
    probs, onehot = torch.softmax(logits, 1), one_hot(target, classes)
    shift = (probs * onehot).flatten(2).mean(-1)
    # MONAI keeps 0 for a channel whose class fills or misses the sample; so do we
    torch.testing.assert_close(ours, ref - shift, atol=1e-5, rtol=1e-6)


def test_boundary_minimum_at_perfect_prediction(blob_target, perfect, make_case):
    target = blob_target((12, 11, 10), 3)
    spacing = (0.8, 0.8, 2.0)
    maps = np.stack([signed_distance_map(t.numpy(), num_classes=3, spacing_mm=spacing) for t in target])
    phi = torch.from_numpy(maps)
    loss = BoundaryLoss()
    best = loss(perfect(target, 3), target, distance_map=phi)
    onehot = one_hot(target, 3).double()
    minimum = (onehot[:, 1:] * phi[:, 1:]).flatten(2).mean(-1).mean()  # sum of phi over the region, per voxel
    assert best.item() == pytest.approx(minimum.item(), rel=1e-6)
    assert best.item() < 0
    for seed in range(3):
        logits, _ = make_case((2, 12, 11, 10), 3, seed=seed)
        assert loss(logits, target, distance_map=phi).item() > best.item()


def test_boundary_needs_map_or_spacing(make_case):
    logits, target = make_case((1, 5, 6), 2, seed=25)
    with pytest.raises(ValueError, match="distance_map"):
        BoundaryLoss()(logits, target)
    phi = torch.from_numpy(signed_distance_map(target[0].numpy(), num_classes=2, spacing_mm=(1.0, 2.0)))[None]
    torch.testing.assert_close(
        BoundaryLoss(spacing_mm=(1.0, 2.0))(logits, target), BoundaryLoss()(logits, target, distance_map=phi)
    )


def test_hausdorff_spacing_must_match_dimensions(make_case):
    logits, target = make_case((1, 5, 6), 2, seed=26)
    with pytest.raises(ValueError, match="spacing_mm"):
        HausdorffDTLoss(spacing_mm=(1.0, 1.0, 1.0))(logits, target)
