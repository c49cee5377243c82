"""restore_argmax equals argmax of the preprocessing module's full restore, in less memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.data import make_phantom
from medseg.inference.restore import linear_indices, restore_argmax, restore_probabilities_in_box
from medseg.preprocessing import PreprocessingPlan, preprocess_image, preprocess_label, restore_to_scan


def test_linear_indices_match_interpolate():
    a = torch.randn(1, 1, 13, dtype=torch.float64)
    for n_out in (5, 13, 31):
        i0, i1, w = linear_indices(13, n_out)
        ours = a[0, 0, i0] * (1 - w.double()) + a[0, 0, i1] * w.double()
        ref = torch.nn.functional.interpolate(a, size=n_out, mode="linear", align_corners=False)[0, 0]
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("index", [0, 1, 2, 3])  # RAS, LPS, LPI, ALS storage
@pytest.mark.parametrize("spacing", [(5.0, 5.5, 6.0), (11.0, 9.0, 13.0)])  # up- and down-sampling
def test_restore_argmax_equals_full_restore(index, spacing):
    case = make_phantom(size="tiny", seed=0, index=index)
    image, record = preprocess_image(case.image, PreprocessingPlan(spacing))
    gen = torch.Generator().manual_seed(index)
    logits = torch.randn(3, *image.shape, generator=gen)
    logits[0] += 2.0 * torch.rand(image.shape, generator=gen)  # mixed regions of background and foreground
    ref = restore_to_scan(logits, record).argmax(0)
    out = restore_argmax(logits, record, slices_per_block=3)
    assert out.shape == case.image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("index", [0, 1, 3])  # RAS, LPS, ALS storage
def test_restore_argmax_with_uniform_regions_of_every_class(index):
    """Smooth logits: large regions where all corners agree on background, liver or tumor (filled without
    interpolating) and boundaries between them (interpolated pixel by pixel) equal the full restore's argmax."""
    from scipy import ndimage

    case = make_phantom(size="tiny", seed=0, index=index)
    image, record = preprocess_image(case.image, PreprocessingPlan((3.0, 3.5, 4.0)))
    rng = np.random.default_rng(index)
    fields = np.stack([ndimage.gaussian_filter(rng.standard_normal(image.shape), 2.0) for _ in range(3)])
    logits = torch.from_numpy(fields.astype(np.float32) * 50)
    classes = logits.argmax(0)
    assert all((classes == k).float().mean() > 0.15 for k in range(3))  # every class holds large regions
    out = restore_argmax(logits, record, slices_per_block=4)
    full = restore_to_scan(logits, record)  # F.interpolate: its own rounding, so ties to ~1e-5 may go either way
    top2 = np.sort(full, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-4
    assert np.count_nonzero(~clear) < 1e-3 * out.size
    np.testing.assert_array_equal(out[clear], full.argmax(0)[clear])
    assert all(np.count_nonzero(out == k) > 0.1 * out.size for k in range(3))


def test_restore_argmax_of_a_label_blob_lands_on_the_reference():
    case = make_phantom(size="tiny", seed=0, index=1)
    _, record = preprocess_image(case.image, PreprocessingPlan((4.0, 4.0, 4.0)))
    label = torch.from_numpy(preprocess_label(case.label, record).astype(np.int64))
    logits = torch.nn.functional.one_hot(label, 3).permute(3, 0, 1, 2).float() * 10
    out = restore_argmax(logits, record)
    ref = case.label.array
    dice = 2 * np.sum((out > 0) & (ref > 0)) / (np.sum(out > 0) + np.sum(ref > 0))
    assert dice > 0.95
    np.testing.assert_array_equal(out, restore_to_scan(logits, record).argmax(0))


def test_all_background_is_zero_and_shape_is_checked():
    case = make_phantom(size="tiny", seed=0, index=2)
    image, record = preprocess_image(case.image, PreprocessingPlan((8.0, 8.0, 8.0)))
    logits = torch.zeros(3, *image.shape)
    logits[0] = 1.0
    assert not restore_argmax(logits, record).any()
    with pytest.raises(ValueError, match="logits must be"):
        restore_argmax(logits[:, 1:], record)


@pytest.mark.parametrize("index", [0, 1, 2, 3])  # RAS, LPS, LPI, ALS storage: the box maps through flips/transposes
@pytest.mark.parametrize("spacing", [(5.0, 5.5, 6.0), (11.0, 9.0, 13.0)])
def test_probabilities_in_a_box_equal_the_cropped_full_restore(index, spacing):
    case = make_phantom(size="tiny", seed=0, index=index)
    image, record = preprocess_image(case.image, PreprocessingPlan(spacing))
    logits = torch.randn(3, *image.shape, generator=torch.Generator().manual_seed(index))
    full = restore_to_scan(torch.softmax(logits, dim=0), record)
    shape = case.image.shape
    box = (slice(1, shape[0] - 3), slice(shape[1] // 3, shape[1]), slice(2, max(3, shape[2] // 2)))
    ours = restore_probabilities_in_box(logits, record, box, slices_per_block=2)  # float32: 1e-5 (lerp order)
    assert ours.dtype == np.float32 and ours.shape == full[(slice(None), *box)].shape
    np.testing.assert_allclose(ours, full[(slice(None), *box)], atol=1e-5, rtol=0)
    whole = restore_probabilities_in_box(logits, record, tuple(slice(0, n) for n in shape))
    np.testing.assert_allclose(whole, full, atol=1e-5, rtol=0)
