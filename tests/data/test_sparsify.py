"""Sparse annotation schemes (issue #30): slices, scribbles, patches from a dense label map."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medseg.data.sparsify import annotated_fraction, axial_axis, sparsify_labels

IGNORE = 3


@pytest.fixture(scope="module")
def dense():
    """A 40 x 36 x 20 map: a liver ellipsoid with two tumor balls."""
    x, y, z = np.meshgrid(np.arange(40), np.arange(36), np.arange(20), indexing="ij")
    labels = np.zeros((40, 36, 20), np.uint8)
    labels[((x - 20) / 14) ** 2 + ((y - 18) / 12) ** 2 + ((z - 10) / 8) ** 2 <= 1] = 1
    labels[(x - 15) ** 2 + (y - 18) ** 2 + (z - 10) ** 2 <= 9] = 2
    labels[(x - 26) ** 2 + (y - 20) ** 2 + (z - 9) ** 2 <= 4] = 2
    return labels


def _run(dense, scheme, fraction, seed=0, axis=2):
    return sparsify_labels(dense, scheme, fraction, axis=axis, ignore_label=IGNORE, rng=np.random.default_rng(seed))


@pytest.mark.parametrize("scheme", ["slices", "scribbles", "patches"])
def test_annotated_voxels_keep_their_dense_label_and_seeds_replay(dense, scheme):
    out = _run(dense, scheme, 0.2)
    keep = out != IGNORE
    assert keep.any() and (~keep).any()
    np.testing.assert_array_equal(out[keep], dense[keep])
    np.testing.assert_array_equal(_run(dense, scheme, 0.2), out)
    others = [_run(dense, scheme, 0.2, seed=s) for s in range(1, 6)]
    assert any(not np.array_equal(o, out) for o in others)  # the seed matters


@pytest.mark.parametrize(("fraction", "step"), [(0.2, 5), (0.5, 2), (1.0, 1), (0.3, 3)])
def test_slices_every_kth_axial_slice(dense, fraction, step):
    out = _run(dense, "slices", fraction, axis=2)
    annotated = np.flatnonzero((out != IGNORE).all(axis=(0, 1)))
    assert ((out != IGNORE).any(axis=(0, 1)) == (out != IGNORE).all(axis=(0, 1))).all()  # whole slices
    assert len(annotated) and (np.diff(annotated) == step).all() and annotated[0] < step
    assert annotated_fraction(out, IGNORE) == pytest.approx(len(annotated) / 20)
    by_axis0 = np.flatnonzero((_run(dense, "slices", fraction, axis=0) != IGNORE).all(axis=(1, 2)))
    assert len(by_axis0) in (40 // step, -(-40 // step)) and (np.diff(by_axis0) == step).all()


def test_scribbles_one_border_and_one_interior_stroke_per_class_and_slice(dense):
    out = _run(dense, "scribbles", 0.2)
    slices = np.flatnonzero((out != IGNORE).any(axis=(0, 1)))
    assert len(slices) == 4 and (np.diff(slices) == 5).all()
    for z in slices:
        plane, strokes = dense[:, :, z], out[:, :, z]
        for value in np.unique(plane):
            mask = plane == value
            mine = strokes == value
            contour = mask & ~ndimage.binary_erosion(mask)
            on_border = mine & contour
            assert on_border.any(), (z, value)
            assert on_border.sum() <= contour.sum() * 0.8  # a part of the contour, not all of it
            depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
            if depth.max() >= 3:
                interior = mine & (depth >= 2)
                assert interior.sum() >= 2, (z, value)  # a segment through the deepest point
                assert mine[np.unravel_index(np.argmax(depth), mask.shape)]
            assert not (mine & ~mask).any()
    assert annotated_fraction(out, IGNORE) < 0.05  # strokes are cheap


def test_patches_reach_the_fraction_with_whole_blocks_and_cover_tumors(dense):
    out = _run(dense, "patches", 0.15)
    fraction = annotated_fraction(out, IGNORE)
    block = max(4, 20 // 6)  # a sixth of the smallest axis, at least 4
    assert 0.15 <= fraction < 0.15 + block**3 / dense.size
    assert (out == 2).any()  # half the blocks are centred on foreground, tumors included
    keep = out != IGNORE
    components, n = ndimage.label(keep)
    sizes = ndimage.sum(keep, components, range(1, n + 1))
    assert sizes.min() >= block**3  # whole blocks


def test_bad_inputs():
    labels = np.zeros((8, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="fraction"):
        _run(labels, "slices", 0.0)
    with pytest.raises(ValueError, match="already hold the ignore value"):
        _run(np.full((8, 8, 8), IGNORE, np.uint8), "slices", 0.5)
    with pytest.raises(ValueError, match="scheme"):
        _run(labels, "lines", 0.5)
    assert axial_axis(np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]])) == 1
