"""Sliding-window inference: equal to MONAI's where both apply; skipping, boxes and 2.5D behave."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference
from monai.networks.nets import UNet

from medseg.inference.sliding_window import (
    BACKGROUND_FILL_LOGIT,
    WindowBlend,
    WindowSettings,
    grid_windows_for_box,
    plan_windows,
    predict_logits,
)


@pytest.fixture(scope="module")
def net3d():
    torch.manual_seed(0)
    return UNet(3, 1, 3, (4, 8), (2,), num_res_units=0).eval()


def _counting(net):
    """``net`` and the list of the batch sizes it was called with."""
    calls = []

    def run(x):
        calls.append(x.shape[0])
        return net(x)

    return run, calls


@pytest.mark.parametrize("overlap,batch_size", [(0.5, 3), (0.25, 1), (0.0, 4)])
def test_equals_monai_gaussian_sliding_window(net3d, overlap, batch_size):
    image = torch.randn(1, 37, 41, 29, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = sliding_window_inference(image[None], (16, 16, 16), 2, net3d, overlap=overlap, mode="gaussian")[0]
    out = predict_logits(net3d, image, WindowSettings((16, 16, 16), 3, overlap=overlap, batch_size=batch_size))
    assert out.shape == (3, 37, 41, 29)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_window_grid_matches_monai_count():
    # MONAI: positions per axis = ceil((size - window) / interval) + 1 with interval int(window * (1 - overlap))
    windows, total = plan_windows((37, 41, 29), (16, 16, 16), overlap=0.5)
    expected = int(np.prod([np.ceil((s - 16) / 8) + 1 for s in (37, 41, 29)]))
    assert total == len(windows) == expected
    mask = np.zeros((37, 41, 29), dtype=bool)
    mask[0, 0, 0] = True  # only the corner window holds it
    kept, total = plan_windows((37, 41, 29), (16, 16, 16), overlap=0.5, mask=mask)
    assert total == expected and len(kept) == 1 and kept[0] == (slice(0, 16),) * 3


def test_mask_skips_windows_and_fills_background(net3d):
    image = torch.randn(1, 40, 40, 24, generator=torch.Generator().manual_seed(2))
    ref = predict_logits(net3d, image, WindowSettings((16, 16, 16), 3))
    mask = torch.zeros(40, 40, 24, dtype=torch.bool)
    mask[2:6, 2:6, 2:6] = True
    calls = []

    def counting(x):
        calls.append(x.shape[0])
        return net3d(x)

    out = predict_logits(counting, image, WindowSettings((16, 16, 16), 3, batch_size=1), mask=mask)
    # windows start at 0, 8, 16, 24 (x, y) and 0, 8 (z): the mask box 2..5 lies in starts {0} x {0} x {0}
    assert sum(calls) == 1
    # every voxel of the mask is covered by exactly the windows that contain a mask voxel -> equal to full run
    torch.testing.assert_close(out[:, 2:6, 2:6, 2:6], ref[:, 2:6, 2:6, 2:6])
    # voxels covered by no window are confident background
    assert torch.equal(out[:, 39, 39, 23], torch.tensor([0.0, BACKGROUND_FILL_LOGIT, BACKGROUND_FILL_LOGIT]))


def test_box_runs_only_windows_reaching_into_it(net3d):
    image = torch.randn(1, 48, 48, 32, generator=torch.Generator().manual_seed(3))
    ref = predict_logits(net3d, image, WindowSettings((16, 16, 16), 3))
    box = (slice(20, 26), slice(3, 9), slice(10, 12))
    counting, calls = _counting(net3d)

    out = predict_logits(counting, image, WindowSettings((16, 16, 16), 3, batch_size=1), box=box)
    # windows [s, s + 16) with s = 0, 8, 16, ...: x 20..25 -> s = 8, 16, 24; y 3..8 -> 0, 8; z 10..11 -> 0, 8
    assert sum(calls) == 3 * 2 * 2
    torch.testing.assert_close(out[(slice(None), *box)], ref[(slice(None), *box)])
    outside = torch.ones(48, 48, 32, dtype=torch.bool)
    outside[box] = False
    assert torch.all(out[0][outside] == 0) and torch.all(out[1:][:, outside] == BACKGROUND_FILL_LOGIT)


def test_box_tiling_lays_a_grid_over_the_box(net3d):
    image = torch.randn(1, 48, 48, 32, generator=torch.Generator().manual_seed(3))
    box = (slice(20, 44), slice(3, 9), slice(10, 12))
    calls = []

    def counting(x):
        calls.append(x.shape[0])
        return net3d(x)

    out = predict_logits(counting, image, WindowSettings((16, 16, 16), 3, box_windows="tile", batch_size=1), box=box)
    # x: the box 20..43 (24) holds windows at 20, 28; y: grown to 16 about its centre -> 0..16; z: -> 3..19
    assert sum(calls) == 2
    with torch.no_grad():
        first = net3d(image[None, :, 20:36, 0:16, 3:19])[0]
    torch.testing.assert_close(out[:, 20:28, 0:16, 3:19], first[:, :8], atol=1e-5, rtol=1e-5)
    assert torch.all(out[1:, :20] == BACKGROUND_FILL_LOGIT)
    with pytest.raises(ValueError, match="box_windows"):
        WindowSettings((16, 16, 16), 3, box_windows="grid")


def test_centred_windows_are_the_grid_windows_centred_in_the_box(net3d):
    image = torch.randn(1, 64, 48, 32, generator=torch.Generator().manual_seed(4))
    ref = predict_logits(net3d, image, WindowSettings((16, 16, 16), 3))
    box = (slice(13, 45), slice(12, 36), slice(0, 32))
    recording, seen = _counting(net3d)
    out = predict_logits(recording, image, WindowSettings((16, 16, 16), 3, box_windows="centred", batch_size=1),
                         box=box)
    # grid starts s = 0, 8, ... (step 8), centres s + 8: x 13..44 -> s = 8, 16, 24, 32; y 12..35 -> 8, 16, 24;
    # z 0..31 -> 0, 8, 16: 4 x 3 x 3 windows, against 6 x 5 x 3 reaching into the box
    assert sum(seen) == 4 * 3 * 3
    assert torch.all(out[1:][(slice(None), *box)] != BACKGROUND_FILL_LOGIT)  # the whole box is covered
    # exact where both grid windows over a voxel (per axis) are centred in the box: x 16..39, y 16..31
    inner = (slice(None), slice(16, 40), slice(16, 32), slice(0, 32))
    torch.testing.assert_close(out[inner], ref[inner])
    # x 13..15: the window at 0 (centre 8, outside the box) is missing there
    assert not torch.allclose(out[:, 13:16, 16:32], ref[:, 13:16, 16:32])


def test_grid_windows_for_box_counts_each_placement():
    windows, total = plan_windows((64, 48, 32), (16, 16, 16), overlap=0.5)
    box = (slice(13, 45), slice(12, 36), slice(0, 32))
    assert total == 7 * 5 * 3  # starts 0, 8, ..., 48 / 0..32 / 0..16
    # reach: starts s with s < stop and s + 16 > start: x 0..40 (6), y 0..32 (5), z all (3)
    assert len(grid_windows_for_box(windows, box, (16, 16, 16), placement="reach")) == 6 * 5 * 3
    # centred: s + 8 in the box: x 8..32 (4), y 8..24 (3), z all (3)
    assert len(grid_windows_for_box(windows, box, (16, 16, 16), placement="centred")) == 4 * 3 * 3
    with pytest.raises(ValueError, match="placement"):
        grid_windows_for_box(windows, box, (16, 16, 16), placement="tile")


def test_centred_windows_complete_the_cover_of_a_thin_box(net3d):
    image = torch.randn(1, 48, 48, 32, generator=torch.Generator().manual_seed(5))
    box = (slice(21, 23), slice(3, 9), slice(30, 32))  # no grid centre in x (8, 16, 24, ...: 24 >= 23)
    out = predict_logits(net3d, image, WindowSettings((16, 16, 16), 3, box_windows="centred", batch_size=1), box=box)
    assert torch.all(out[1:][(slice(None), *box)] != BACKGROUND_FILL_LOGIT)


@pytest.mark.parametrize("box_windows", ["reach", "centred", "tile"])
def test_a_grown_box_runs_only_new_windows_and_changes_nothing(net3d, box_windows):
    image = torch.randn(1, 48, 48, 32, generator=torch.Generator().manual_seed(6))
    settings = WindowSettings((16, 16, 16), 3, box_windows=box_windows, batch_size=1)
    small, grown = (slice(20, 36), slice(3, 19), slice(0, 16)), (slice(20, 44), slice(3, 19), slice(0, 16))
    counting, calls = _counting(net3d)
    blend = WindowBlend(image, settings)
    first = blend.run(counting, box=small)
    again = blend.run(counting, box=grown)
    assert sum(calls) == first + again == blend.windows_run
    out = blend.logits()
    counting, calls = _counting(net3d)
    ref = predict_logits(counting, image, settings, box=grown)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)  # the grown box's windows include the small one's
    # counted by hand (grid starts 0, 8, .., 32 per axis): reach x 8..32 x y 0, 8, 16 x z 0, 8 = 24, and the
    # grown box reaches no new start; centred x 16, 24 x y 0, 8 x z 0 = 4, then x 32; tile x 20, then x 28
    assert (first, again) == {"reach": (24, 0), "centred": (4, 2), "tile": (1, 1)}[box_windows]
    assert sum(calls) == first + again  # the fresh run of the grown box runs the same windows
    with pytest.raises(RuntimeError, match="logits"):
        blend.run(counting, box=grown)


def test_a_grown_box_keeps_the_windows_of_earlier_boxes(net3d):
    """Tiles over a box grown on both sides sit elsewhere (x 16, 24) than the first tile (x 20): the result
    blends all three, checked against a blend written out here with MONAI's Gaussian map."""
    from monai.data.utils import compute_importance_map

    image = torch.randn(1, 48, 48, 32, generator=torch.Generator().manual_seed(7))
    settings = WindowSettings((16, 16, 16), 3, box_windows="tile", batch_size=2)
    blend = WindowBlend(image, settings)
    assert blend.run(net3d, box=(slice(20, 36), slice(3, 19), slice(0, 16))) == 1
    grown = (slice(16, 40), slice(3, 19), slice(0, 16))
    assert blend.run(net3d, box=grown) == 2
    out = blend.logits()
    weight = compute_importance_map((16, 16, 16), mode="gaussian", sigma_scale=0.125)
    num, den = torch.zeros(3, 48, 48, 32), torch.zeros(48, 48, 32)
    with torch.no_grad():
        for x in (20, 16, 24):
            sl = (slice(x, x + 16), slice(3, 19), slice(0, 16))
            num[(slice(None), *sl)] += net3d(image[(slice(None), *sl)][None])[0] * weight
            den[sl] += weight
    torch.testing.assert_close(out[(slice(None), *grown)], (num / den)[(slice(None), *grown)], atol=1e-5, rtol=1e-5)
    assert torch.all(out[1:, :16] == BACKGROUND_FILL_LOGIT) and torch.all(out[1:, 40:] == BACKGROUND_FILL_LOGIT)


def test_foreground_is_the_argmax_inside_the_last_box(net3d):
    image = torch.randn(1, 32, 32, 32, generator=torch.Generator().manual_seed(8))
    box = (slice(4, 28), slice(0, 20), slice(8, 24))
    blend = WindowBlend(image, WindowSettings((16, 16, 16), 3, box_windows="reach"))
    blend.run(net3d, box=box)
    found = blend.foreground()
    expected = blend.logits().argmax(0).numpy() > 0
    assert found.shape == (32, 32, 32) and expected[box].any() and not found[:4].any()
    np.testing.assert_array_equal(found, expected)


def test_small_image_is_padded_and_cropped_back(net3d):
    image = torch.randn(1, 10, 16, 6, generator=torch.Generator().manual_seed(4))
    out = predict_logits(net3d, image, WindowSettings((16, 16, 16), 3))
    padded = torch.nn.functional.pad(image[None], (5, 5, 0, 0, 3, 3), value=float(image.min()))
    with torch.no_grad():
        expected = net3d(padded)[0][:, 3:13, :, 5:11]
    assert out.shape == (3, 10, 16, 6)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_2d_model_with_context_slices():
    torch.manual_seed(0)
    net = UNet(2, 3, 3, (4, 8), (2,), num_res_units=0).eval()
    image = torch.randn(1, 16, 16, 5, generator=torch.Generator().manual_seed(5))
    out = predict_logits(net, image, WindowSettings((16, 16), 3, context_slices=1, batch_size=4))
    # slice z uses slices z-1, z, z+1 as channels (edge slices repeated); one window per slice
    for z in range(5):
        idx = [max(0, z - 1), z, min(4, z + 1)]
        with torch.no_grad():
            expected = net(image[0][..., idx].permute(2, 0, 1)[None])[0]
        torch.testing.assert_close(out[..., z], expected, atol=1e-5, rtol=1e-5)


def test_bad_arguments_name_the_problem(net3d):
    image = torch.zeros(1, 16, 16, 16)
    with pytest.raises(ValueError, match="overlap"):
        WindowSettings((16, 16, 16), 3, overlap=1.0)
    with pytest.raises(ValueError, match="num_classes"):
        predict_logits(net3d, image, WindowSettings((16, 16, 16), 2))
    with pytest.raises(ValueError, match=r"\(C, X, Y, Z\)"):
        predict_logits(net3d, image[0], WindowSettings((16, 16, 16), 3))
    with pytest.raises(ValueError, match="context_slices"):
        WindowSettings((16, 16, 16), 3, context_slices=1)
    with pytest.raises(ValueError, match="patch_size"):
        WindowSettings((16,), 3)


def test_overlap_is_bounded_where_the_window_count_stays_reasonable():
    """Issue #29.15: --overlap 0.99 was accepted (about 10^5 windows, a hang); the bound is 0.75, whose
    window count is at most 4 per axis-window, against MONAI's count formula."""
    from medseg.errors import ConfigError
    from medseg.inference.predictor import InferenceSettings
    from medseg.inference.sliding_window import MAX_OVERLAP

    _, total = plan_windows((64, 64, 64), (16, 16, 16), overlap=MAX_OVERLAP)
    assert total == 13**3  # interval int(16 * 0.25) = 4: ceil((64 - 16) / 4) + 1 = 13 positions per axis
    for bad in (0.99, 0.76, -0.1):
        with pytest.raises(ValueError, match=r"overlap must be in \[0, 0.75\]"):
            plan_windows((64, 64, 64), (16, 16, 16), overlap=bad)
        with pytest.raises(ConfigError, match=rf"overlap must be in \[0, 0.75\], got {bad}"):
            InferenceSettings(overlap=bad)
