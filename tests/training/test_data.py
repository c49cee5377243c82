"""The patch loader: shapes, padding, foreground oversampling, determinism, augmentation, loss maps."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from medseg.errors import ConfigError, DataError
from medseg.io import Volume, affine_from_geometry
from medseg.preprocessing import PreprocessingPlan, load_preprocessed, preprocess_dataset
from medseg.training.data import PatchDataset, PatchSettings, make_loader

NO_AUG = {"flip_prob": 0.0, "affine_prob": 0.0, "noise_prob": 0.0, "brightness_prob": 0.0, "contrast_prob": 0.0,
          "gamma_prob": 0.0}


@pytest.fixture(scope="module")
def block_cache(tmp_path_factory):
    """One 40 x 40 x 20 case at 1 mm: a 6^3 'liver' block with a single-voxel 'tumor', in an image whose
    values are all distinct (so a patch's position can be read from it)."""
    shape = (40, 40, 20)
    label = np.zeros(shape, np.uint8)
    label[10:16, 20:26, 5:11] = 1
    label[12, 22, 7] = 2
    image = (np.arange(np.prod(shape)).reshape(shape) - 16_000).astype(np.int16)
    affine = affine_from_geometry((1.0, 1.0, 1.0))
    case = ("block", Volume(image, affine), Volume(label, affine))
    plan = PreprocessingPlan((1.0, 1.0, 1.0), "ct_zscore", clip_hu=(-20_000.0, 20_000.0), mean=0.0, std=100.0)
    return preprocess_dataset([case], tmp_path_factory.mktemp("block"), plan, workers=1, progress=False)


@pytest.fixture(scope="module")
def tiny_cache(tiny_dataset, tmp_path_factory):
    cases = [(str(i), tiny_dataset / f"volume-{i}.nii.gz", tiny_dataset / f"segmentation-{i}.nii.gz")
             for i in range(4)]
    plan = PreprocessingPlan.window((8.0, 8.0, 9.0))
    return preprocess_dataset(cases, tmp_path_factory.mktemp("tinycache"), plan, workers=1, progress=False)


def test_foreground_fraction_and_tiny_tumor(block_cache):
    ds = PatchDataset(block_cache, ["block"],
                      PatchSettings(patch_size=(9, 9, 9), batch_size=3, foreground_fraction=1 / 3))
    centres = np.array([int(ds[i]["label"][0, 4, 4, 4]) for i in range(1500)]).reshape(500, 3)
    # exactly one forced foreground patch per batch of 3; random ones hit the 216 fg voxels rarely (0.7%)
    assert np.all((centres > 0).sum(1) >= 1)
    assert (centres > 0).mean() == pytest.approx(1 / 3, abs=0.02)
    # classes are picked uniformly: the single tumor voxel is the centre of ~1/6 of all patches
    assert (centres == 2).mean() == pytest.approx(1 / 6, abs=0.03)
    # a non-integer share per batch (2 * 1/3) is met on average
    ds2 = PatchDataset(block_cache, ["block"],
                       PatchSettings(patch_size=(9, 9, 9), batch_size=2, foreground_fraction=1 / 3))
    assert np.mean([int(ds2[i]["label"][0, 4, 4, 4]) > 0 for i in range(1200)]) == pytest.approx(1 / 3, abs=0.04)


def test_patches_are_crops_of_the_cache(block_cache):
    case = load_preprocessed(block_cache, "block")
    ds = PatchDataset(block_cache, ["block"], PatchSettings(patch_size=(9, 7, 5), batch_size=2))
    for i in range(20):
        s = ds[i]
        assert s["image"].shape == (1, 9, 7, 5) and s["image"].dtype == torch.float32
        assert s["label"].shape == (1, 9, 7, 5) and s["label"].dtype == torch.int64
        # find the crop by its unique ramp values: the image value determines the voxel index
        corner = float(s["image"][0, 0, 0, 0])
        hits = np.argwhere(np.isclose(case.image, corner))
        matches = [h for h in hits if np.array_equal(case.image[h[0]:h[0] + 9, h[1]:h[1] + 7, h[2]:h[2] + 5],
                                                     s["image"][0].numpy())]
        assert matches, "patch is not a crop of the cached image"
        x, y, z = matches[0]
        np.testing.assert_array_equal(s["label"][0].numpy(), case.label[x:x + 9, y:y + 7, z:z + 5])


def test_padding_when_case_smaller_than_patch(tiny_cache):
    case = load_preprocessed(tiny_cache, "3")
    patch = tuple(n + 6 for n in case.image.shape)
    ds = PatchDataset(tiny_cache, ["3"], PatchSettings(patch_size=patch, batch_size=1, foreground_fraction=0.0))
    s = ds[0]
    assert s["image"].shape == (1, *patch)
    # the whole case lies inside the patch: every label voxel is there, the rest is background / air
    np.testing.assert_array_equal(np.bincount(s["label"].numpy().ravel(), minlength=3)[1:],
                                  np.bincount(case.label.ravel(), minlength=3)[1:])
    assert float(s["image"].min()) == pytest.approx(case.meta["image_min"])
    assert s["image"].numpy().sum() == pytest.approx(case.image.sum() + (np.prod(patch) - case.image.size)
                                                     * case.meta["image_min"], rel=1e-4)


@pytest.mark.parametrize("context", [0, 2])
def test_2d_and_25d_patches(block_cache, context):
    case = load_preprocessed(block_cache, "block")
    ds = PatchDataset(block_cache, ["block"], PatchSettings(patch_size=(40, 40), batch_size=2, spatial_dims=2,
                      context_slices=context, foreground_fraction=0.0))
    for i in range(8):
        s = ds[i]
        assert s["image"].shape == (2 * context + 1, 40, 40) and s["label"].shape == (1, 40, 40)
        # the full in-plane patch starts at (0, 0): the centre channel is slice z of the case
        centre = s["image"][context].numpy()
        z = int(np.argmin([np.abs(case.image[:, :, k] - centre).max() for k in range(20)]))
        np.testing.assert_array_equal(centre, case.image[:, :, z])
        np.testing.assert_array_equal(s["label"][0].numpy(), case.label[:, :, z])
        for c in range(2 * context + 1):
            k = z - context + c
            expected = case.image[:, :, k] if 0 <= k < 20 else np.full((40, 40), case.meta["image_min"])
            np.testing.assert_array_equal(s["image"][c].numpy(), expected)
    centred = PatchDataset(block_cache, ["block"], PatchSettings(patch_size=(9, 9), batch_size=2, spatial_dims=2,
                           context_slices=context, foreground_fraction=1.0))
    assert all(int(centred[i]["label"][0, 4, 4]) > 0 for i in range(20))


def test_loader_batches_deterministic_across_workers(tiny_cache):
    patches = PatchSettings(patch_size=(16, 16, 8), batch_size=2, augment={}, seed=7)
    serial = list(make_loader(tiny_cache, ["0", "1", "2", "3"], patches, workers=0, iterations_per_epoch=3))
    parallel = list(make_loader(tiny_cache, ["0", "1", "2", "3"], patches, workers=2, iterations_per_epoch=3))
    assert len(serial) == 3
    for a, b in zip(serial, parallel):
        assert a["image"].shape == (2, 1, 16, 16, 8) and a["label"].shape == (2, 1, 16, 16, 8)
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    reseeded = dataclasses.replace(patches, seed=8)
    other = next(iter(make_loader(tiny_cache, ["0", "1", "2", "3"], reseeded, workers=0, iterations_per_epoch=3)))
    assert not torch.equal(other["image"], serial[0]["image"])


def test_epochs_differ_and_replay(tiny_cache):
    loader = make_loader(tiny_cache, ["0", "1"], PatchSettings(patch_size=(16, 16, 8), batch_size=2),
                         iterations_per_epoch=2)
    first, second = list(loader), list(loader)
    assert not torch.equal(first[0]["image"], second[0]["image"])
    loader.sampler.set_epoch(0)
    assert torch.equal(next(iter(loader))["image"], first[0]["image"])


def test_identity_affine_and_full_flip_match_plain_patches(block_cache):
    plain = PatchDataset(block_cache, ["block"], PatchSettings(patch_size=(8, 9, 6), batch_size=2))
    identity = PatchDataset(block_cache, ["block"], PatchSettings(patch_size=(8, 9, 6), batch_size=2,
                            augment={**NO_AUG, "affine_prob": 1.0, "rotate_deg": 0.0, "scale_range": (1.0, 1.0)}))
    flipped = PatchDataset(block_cache, ["block"], PatchSettings(patch_size=(8, 9, 6), batch_size=2,
                           augment={**NO_AUG, "flip_prob": 1.0}))
    for i in range(6):
        p, q, f = plain[i], identity[i], flipped[i]
        torch.testing.assert_close(q["image"], p["image"], atol=1e-4, rtol=0)
        assert torch.equal(q["label"], p["label"])
        assert torch.equal(f["image"], p["image"].flip(1, 2, 3)) and torch.equal(f["label"], p["label"].flip(1, 2, 3))


@pytest.mark.parametrize("axes", [(1, 2), (0,), ()])
def test_flip_axes_mirror_only_those_axes(block_cache, axes):
    plain = PatchDataset(block_cache, ["block"], PatchSettings(patch_size=(8, 9, 6), batch_size=2))
    flipped = PatchDataset(block_cache, ["block"], PatchSettings(patch_size=(8, 9, 6), batch_size=2,
                           augment={**NO_AUG, "flip_prob": 1.0, "flip_axes": list(axes)}))
    dims = tuple(a + 1 for a in axes)  # tensor dims of (C, X, Y, Z)
    for i in range(4):
        p, f = plain[i], flipped[i]
        expect = p["image"].flip(dims) if dims else p["image"]
        assert torch.equal(f["image"], expect)


@pytest.mark.parametrize("axes", [[0, 0], [3], ["x"], 1])
def test_bad_flip_axes(axes):
    with pytest.raises(ConfigError, match="flip_axes"):
        PatchSettings(patch_size=(8, 8, 8), batch_size=1, augment={"flip_axes": axes})


def test_rotation_keeps_foreground_centre(block_cache):
    """Rotated/scaled foreground patches (odd sizes: exact centre) stay centred on their foreground voxel."""
    ds = PatchDataset(block_cache, ["block"],
                      PatchSettings(patch_size=(11, 11, 7), batch_size=1, foreground_fraction=1.0,
                      augment={**NO_AUG, "affine_prob": 1.0}))
    samples = [ds[i] for i in range(30)]
    assert all(int(s["label"][0, 5, 5, 3]) > 0 for s in samples)
    assert all(s["image"].shape == (1, 11, 11, 7) for s in samples)
    # rotation happened: label patches are not all axis-aligned crops (some fg counts differ from plain)
    plain = PatchDataset(block_cache, ["block"],
                         PatchSettings(patch_size=(11, 11, 7), batch_size=1, foreground_fraction=1.0))
    assert any(int((s["label"] > 0).sum()) != int((plain[i]["label"] > 0).sum()) for i, s in enumerate(samples))


def test_intensity_augmentation_changes_image_only(block_cache):
    aug = {**NO_AUG, "noise_prob": 1.0, "gamma_prob": 1.0}
    plain = PatchDataset(block_cache, ["block"], PatchSettings(patch_size=(8, 8, 8), batch_size=2))
    noisy = PatchDataset(block_cache, ["block"], PatchSettings(patch_size=(8, 8, 8), batch_size=2, augment=aug))
    p, n = plain[3], noisy[3]
    assert torch.equal(p["label"], n["label"]) and not torch.allclose(p["image"], n["image"])


def test_maps_match_compute_maps(tiny_cache):
    from medseg.losses import compute_maps

    patches = PatchSettings(patch_size=(24, 24, 8), batch_size=2, maps={"weight_map", "distance_map"}, augment={},
                            seed=1, spacing_mm=(8.0, 8.0, 9.0))
    loader = make_loader(tiny_cache, ["0", "1", "2", "3"], patches, iterations_per_epoch=2)
    spacing = (8.0, 8.0, 9.0)
    for batch in loader:
        assert batch["weight_map"].shape == (2, 1, 24, 24, 8) and batch["distance_map"].shape == (2, 3, 24, 24, 8)
        for i in range(2):
            expected = compute_maps(batch["label"][i].numpy(), ["weight_map", "distance_map"], num_classes=3,
                                    spacing_mm=spacing)
            np.testing.assert_allclose(batch["weight_map"][i].numpy(), expected["weight_map"], rtol=1e-5)
            np.testing.assert_allclose(batch["distance_map"][i].numpy(), expected["distance_map"], rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"case_ids": ["nope"]}, DataError, "not in the preprocessed cache"),
        ({"patch_size": (8, 8)}, ConfigError, "patch_size"),
        ({"context_slices": 1}, ConfigError, "context_slices"),
        ({"augment": {"flip": 0.5}}, ConfigError, r"unknown key augmentation\.flip;"),
        ({"augment": {"gamma_prob": 2.0}}, ConfigError, "gamma_prob"),
        ({"foreground_fraction": 1.5}, ConfigError, "foreground_fraction"),
    ],
)
def test_bad_arguments(tiny_cache, kwargs, error, match):
    args = {"case_ids": ["0"], "patch_size": (8, 8, 8), "batch_size": 2, **kwargs}
    with pytest.raises(error, match=match):
        case_ids = args.pop("case_ids")
        make_loader(tiny_cache, case_ids, PatchSettings(**args))


def test_batch_preview_png(block_cache, tmp_path):
    import matplotlib.image as mpimg

    from medseg.training.data import save_batch_preview

    patches = PatchSettings(patch_size=(12, 12, 6), batch_size=3, foreground_fraction=1.0)
    batch = next(iter(make_loader(block_cache, ["block"], patches, iterations_per_epoch=1)))
    out = save_batch_preview(batch, tmp_path / "preview.png")
    picture = mpimg.imread(out)
    assert picture.ndim == 3 and picture.shape[1] > 2 * picture.shape[0]  # three panels side by side
    # every patch is centred on foreground, so the overlay colours appear
    green = (picture[..., 1] > picture[..., 0] + 0.2) & (picture[..., 1] > picture[..., 2] + 0.2)
    assert green.any()
