"""Coarse-to-fine: the fine pass covers the whole liver whatever the coarse pass got wrong."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from medseg.inference import coarse_to_fine as c2f
from medseg.inference.coarse_to_fine import (
    CoarseToFineSettings,
    faces_reached,
    foreground_box,
    grow_faces,
    predict_coarse_to_fine,
)
from medseg.inference.restore import argmax_classes
from medseg.inference.sliding_window import WindowSettings, predict_logits

SHAPE = (48, 40, 24)
SPACING = (1.0, 1.0, 2.0)
WINDOW = WindowSettings((16, 16, 8), 3, box_windows="tile", batch_size=4)


class _PerVoxel(torch.nn.Module):
    """Liver where the image is positive, a voxel at a time (so any window placement gives the same
    labels as a whole-scan run), and a count of the windows it saw."""

    def __init__(self):
        super().__init__()
        self.windows = 0

    def forward(self, x):
        self.windows += x.shape[0]
        v = x[:, :1]
        return torch.cat([torch.zeros_like(v), 4.0 * v, torch.full_like(v, -10.0)], dim=1)


def _ellipsoid(centre, radii, shape=SHAPE):
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"))
    r = sum(((g - c) / s) ** 2 for g, c, s in zip(grid, centre, radii))
    return r <= 1.0


def _coarse(mask, factor=2):
    """A coarse map from a fine one: a coarse voxel is foreground when any of its fine voxels is."""
    x, y, z = (n // factor for n in mask.shape)
    return mask[: x * factor, : y * factor, : z * factor].reshape(x, factor, y, factor, z, factor).any((1, 3, 5))


def _inside(box, mask):
    inner = np.zeros_like(mask)
    inner[box] = True
    return bool(mask[~inner].sum() == 0)


def _livers():
    """(name, true liver, constructed coarse map) for the three ways a coarse pass goes wrong."""
    # split: a big lobe and a small one (4% of the voxels) joined by a thin bridge the coarse pass misses
    big = _ellipsoid((30, 20, 12), (12, 10, 7))
    small = _ellipsoid((11, 20, 12), (3, 3, 3))
    bridge = np.zeros(SHAPE, dtype=bool)
    bridge[13:20, 19:22, 11:14] = True
    split = big | small | bridge
    coarse_split = _coarse(big) | _coarse(small)
    # at the scan's edge: the liver runs off the low x face; the coarse pass finds only its inner half
    edge = _ellipsoid((4, 20, 12), (14, 10, 7))
    coarse_edge = _coarse(edge & (np.arange(SHAPE[0]) >= 10)[:, None, None])
    # too small: the coarse liver is the true one at half its radii
    whole = _ellipsoid((24, 20, 12), (16, 13, 8))
    coarse_small = _coarse(_ellipsoid((24, 20, 12), (8, 6, 4)))
    return [("split", split, coarse_split), ("edge", edge, coarse_edge), ("smaller", whole, coarse_small)]


@pytest.mark.parametrize("name,liver,coarse", _livers(), ids=[c[0] for c in _livers()])
def test_fine_pass_covers_the_whole_liver(monkeypatch, name, liver, coarse):
    image = torch.from_numpy(np.where(liver, 1.0, -1.0).astype(np.float32))[None]
    settings = CoarseToFineSettings(margin_mm=2.0, guard_mm=2.0, min_volume_ml=0.0)
    margin = [2.0 / s for s in SPACING]
    first_box = foreground_box(coarse, SHAPE, margin_vox=margin)
    # the coarse map's box, as the previous code used it (only the largest component), cuts the liver
    largest_only = foreground_box(coarse, SHAPE, margin_vox=margin, min_fraction=1.0)
    assert not _inside(largest_only, liver) and not _inside(first_box, liver)
    monkeypatch.setattr(c2f, "coarse_foreground", lambda *args, **kwargs: coarse)
    net = _PerVoxel()
    logits, stats = predict_coarse_to_fine(net, net, image, WINDOW, settings, spacing_mm=SPACING)
    labels = argmax_classes(logits).numpy()
    full = argmax_classes(predict_logits(net, image, WINDOW)).numpy()
    np.testing.assert_array_equal(full, liver.astype(np.uint8))
    np.testing.assert_array_equal(labels, full)  # every liver voxel predicted, as in a whole-scan run
    assert stats["coarse_box"] == [[b.start, b.stop] for b in first_box]
    assert stats["box"] is not None and stats["rounds"] >= 2


def test_a_good_box_takes_one_pass_and_fewer_windows(monkeypatch):
    liver = _ellipsoid((24, 20, 12), (6, 5, 4))
    image = torch.from_numpy(np.where(liver, 1.0, -1.0).astype(np.float32))[None]
    monkeypatch.setattr(c2f, "coarse_foreground", lambda *args, **kwargs: _coarse(liver))
    boxed, whole = _PerVoxel(), _PerVoxel()
    settings = CoarseToFineSettings(margin_mm=6.0, min_volume_ml=0.0)
    logits, stats = predict_coarse_to_fine(boxed, boxed, image, WINDOW, settings, spacing_mm=SPACING)
    full = predict_logits(whole, image, WINDOW)
    assert stats["rounds"] == 1 and boxed.windows < whole.windows
    np.testing.assert_array_equal(argmax_classes(logits).numpy(), argmax_classes(full).numpy())


def test_falls_back_to_the_whole_scan_when_the_box_keeps_growing(monkeypatch):
    liver = _ellipsoid((24, 20, 12), (20, 15, 10))
    image = torch.from_numpy(np.where(liver, 1.0, -1.0).astype(np.float32))[None]
    monkeypatch.setattr(c2f, "coarse_foreground", lambda *args, **kwargs: _coarse(_ellipsoid((24, 20, 12), (2, 2, 2))))
    net = _PerVoxel()
    logits, stats = predict_coarse_to_fine(net, net, image, WINDOW,
                                           CoarseToFineSettings(margin_mm=1.0, guard_mm=1.0, max_rounds=1,
                                                                min_volume_ml=0.0),
                                           spacing_mm=SPACING)
    assert stats["box"] is None and stats["rounds"] == 2
    np.testing.assert_array_equal(argmax_classes(logits).numpy(), liver.astype(np.uint8))


@pytest.mark.parametrize("box_windows", ["tile", "reach"])
def test_a_stray_coarse_blob_away_from_the_liver_is_not_trusted(monkeypatch, box_windows):
    # the coarse pass missed the liver (x 4..20) and found a stray false positive at x ~ 40: its box
    # is one coarse voxel (0.016 mL), the fine pass finds nothing there; the whole scan must be predicted
    liver = _ellipsoid((12, 20, 12), (8, 10, 7))
    image = torch.from_numpy(np.where(liver, 1.0, -1.0).astype(np.float32))[None]
    stray = np.zeros(SHAPE, dtype=bool)
    stray[40:42, 30:32, 4:6] = True
    monkeypatch.setattr(c2f, "coarse_foreground", lambda *args, **kwargs: _coarse(stray))
    net = _PerVoxel()
    window = WindowSettings((16, 16, 8), 3, box_windows=box_windows, batch_size=4)
    liver_ml = liver.sum() * 2.0 / 1000  # 1 x 1 x 2 mm voxels
    settings = CoarseToFineSettings(margin_mm=2.0, min_volume_ml=liver_ml / 2)  # the blob is far below it
    logits, stats = predict_coarse_to_fine(net, net, image, window, settings, spacing_mm=SPACING)
    assert stats["coarse_ml"] == pytest.approx(2 * 2 * 4 / 1000)  # one coarse voxel of 2 x 2 x 4 mm
    assert stats["box"] is None and stats["rounds"] >= 2  # a box pass, then the whole scan
    np.testing.assert_array_equal(argmax_classes(logits).numpy(), liver.astype(np.uint8))
    # trusting any foreground (the previous rule): the box stays on the blob and the liver is lost
    trusting, _ = predict_coarse_to_fine(net, net, image, window, replace(settings, min_volume_ml=0.0),
                                         spacing_mm=SPACING)
    assert argmax_classes(trusting).numpy().sum() < liver.sum() // 2


def test_a_fine_pass_that_finds_too_little_in_a_trusted_box_falls_back(monkeypatch):
    # the coarse map is a false positive of the liver's size where there is none; the fine pass finds no
    # liver in its box, far from every face: whole scan
    liver = _ellipsoid((10, 20, 12), (6, 8, 6))
    image = torch.from_numpy(np.where(liver, 1.0, -1.0).astype(np.float32))[None]
    ghost = _ellipsoid((38, 20, 12), (6, 8, 6))
    monkeypatch.setattr(c2f, "coarse_foreground", lambda *args, **kwargs: _coarse(ghost))
    net = _PerVoxel()
    window = WindowSettings((16, 16, 8), 3, box_windows="reach", batch_size=4)
    settings = CoarseToFineSettings(margin_mm=2.0, min_volume_ml=liver.sum() * 2.0 / 1000 / 2)
    logits, stats = predict_coarse_to_fine(net, net, image, window, settings, spacing_mm=SPACING)
    assert stats["coarse_ml"] >= settings.min_volume_ml and stats["coarse_box"] is not None  # looked trustworthy
    assert stats["box"] is None and stats["rounds"] == 2
    np.testing.assert_array_equal(argmax_classes(logits).numpy(), liver.astype(np.uint8))


def test_grid_windows_grow_the_box_without_snapping_to_the_edge(monkeypatch):
    # liver z 8..16 of 24 slices, coarse liver at half the radii: the box grows once; a tiled box goes to
    # the scan's edge when it ends within a window of it, a box of grid windows grows only as far as needed
    liver = _ellipsoid((24, 20, 12), (8, 8, 4))
    image = torch.from_numpy(np.where(liver, 1.0, -1.0).astype(np.float32))[None]
    monkeypatch.setattr(c2f, "coarse_foreground", lambda *args, **kwargs: _coarse(_ellipsoid((24, 20, 12), (4, 4, 2))))
    settings = CoarseToFineSettings(margin_mm=2.0, min_volume_ml=0.0)
    z_boxes = {}
    for box_windows in ("tile", "centred"):
        window = WindowSettings((16, 16, 8), 3, box_windows=box_windows, batch_size=4)
        logits, stats = predict_coarse_to_fine(_PerVoxel(), _PerVoxel(), image, window, settings, spacing_mm=SPACING)
        np.testing.assert_array_equal(argmax_classes(logits).numpy(), liver.astype(np.uint8))
        z_boxes[box_windows] = stats["box"][2]
    assert z_boxes["tile"] == [0, 24]
    assert 0 < z_boxes["centred"][0] <= 8 and 17 <= z_boxes["centred"][1] < 24


def test_foreground_box_maps_coarse_voxels_to_the_fine_grid():
    coarse = np.zeros((10, 10, 5), dtype=bool)
    coarse[2:4, 5, 1] = True  # coarse voxels 2..3 -> fine [2 * 2.0, 4 * 2.0) = [4, 8) on x
    coarse[8, 8, 4] = True  # a 1-voxel component: half of the largest (2 voxels)
    box = foreground_box(coarse, (20, 20, 10), margin_vox=(1.0, 0.0, 0.5), min_fraction=0.6)
    assert box == (slice(3, 9), slice(10, 12), slice(1, 5))  # z: [2 - 0.5, 4 + 0.5) -> floor/ceil
    both = foreground_box(coarse, (20, 20, 10), margin_vox=(0, 0, 0), min_fraction=0.5)
    assert both == (slice(4, 18), slice(10, 18), slice(2, 10))
    assert foreground_box(np.zeros((4, 4, 4), dtype=bool), (8, 8, 8), margin_vox=(1, 1, 1)) is None


def test_faces_reached_and_grow_faces():
    fg = np.zeros((20, 20, 20), dtype=bool)
    fg[5:10, 0:3, 8:12] = True  # y touches the scan's edge (not a face to grow), x within 1 of the low face
    box = (slice(4, 15), slice(0, 15), slice(6, 14))
    assert faces_reached(fg, box, guard_vox=(2, 2, 2)) == [(0, 0)]
    assert faces_reached(fg, box, guard_vox=(1, 1, 2)) == []
    assert faces_reached(fg, box, guard_vox=(1, 1, 3)) == [(2, 0), (2, 1)]
    assert faces_reached(np.zeros_like(fg), box, guard_vox=(2, 2, 2)) == []
    grown = grow_faces(box, [(0, 0), (2, 1)], (20, 20, 20), step_vox=(3, 3, 10), foreground=fg)
    assert grown == (slice(1, 15), slice(0, 15), slice(6, 20))  # x: 4 - 3; z: 14 + 10 clamped to 20
    snapped = grow_faces(box, [(0, 0), (2, 1)], (40, 20, 40), step_vox=(1, 1, 2), foreground=fg, snap_vox=(4, 4, 8))
    assert snapped == (slice(0, 15), slice(0, 15), slice(6, 16))  # x: 3 < 4 from the edge -> 0; z: 24 left


def test_guard_defaults_to_a_third_of_the_margin():
    assert CoarseToFineSettings(margin_mm=15.0).guard_mm == 5.0
    assert CoarseToFineSettings(margin_mm=15.0, guard_mm=0.0).guard_mm == 0.0


def test_bad_settings_name_the_field():
    for kwargs, name in [({"factor": 0.5}, "factor"), ({"overlap": 1.0}, "overlap"), ({"margin_mm": -1}, "margin_mm"),
                         ({"guard_mm": -1}, "guard_mm"), ({"min_fraction": 2}, "min_fraction"),
                         ({"max_rounds": 0}, "max_rounds"), ({"min_volume_ml": -1}, "min_volume_ml")]:
        with pytest.raises(ValueError, match=name):
            CoarseToFineSettings(**kwargs)


@pytest.mark.parametrize("background_logit,expected", [(2.0, True), (4.0, False)])
def test_several_networks_find_the_box_from_their_mean_probabilities(background_logit, expected):
    """Fold A: logits (0, 3, 0), softmax (.045, .909, .045); fold B: (b, 0, 0). b = 2: B's softmax
    (.787, .107, .107), mean liver .508 > background .416; b = 4: (.965, .018, .018), mean .464 < .505."""

    def constant(values):
        def run(x):
            return torch.tensor(values).view(1, 3, 1, 1, 1).expand(x.shape[0], 3, *x.shape[2:]).clone()

        return run

    image = torch.zeros(1, 32, 32, 16)
    window = WindowSettings((16, 16, 8), 3)
    nets = [constant([0.0, 3.0, 0.0]), constant([background_logit, 0.0, 0.0])]
    found = c2f.coarse_foreground(nets, image, window, factor=2.0)
    assert found.shape == (16, 16, 8) and np.all(found == expected)
    assert np.all(c2f.coarse_foreground(nets[:1], image, window, factor=2.0))  # fold A alone: liver


def test_volume_ml_uses_the_true_voxel_volume():
    """Issue #29.3: the fine pass's least-foreground test measures |det| of the grid's affine (25° tilt:
    cos 25° of the spacings' product)."""
    mask = np.zeros((4, 4, 4), bool)
    mask[:2, :2, :] = True  # 16 voxels of 2 x 2 x 5 mm = 20 uL each by the product
    tilt = np.radians(25.0)
    affine = np.diag([2.0, 2.0, 5.0, 1.0])
    affine[1:3, 2] = 5.0 * np.sin(tilt), 5.0 * np.cos(tilt)
    assert c2f.volume_ml(mask, (2.0, 2.0, 5.0)) == pytest.approx(16 * 0.02)
    assert c2f.volume_ml(mask, (2.0, 2.0, 5.0), affine=affine) == pytest.approx(16 * 0.02 * np.cos(tilt))
