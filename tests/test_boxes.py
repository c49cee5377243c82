"""Boxes against hand-computed cases (medseg.boxes)."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.boxes import (
    bounding_box,
    box_on_grid,
    grow_box,
    grow_to_window,
    joint_bounding_box,
    touches_border,
    union_box,
)


def test_bounding_box_with_margin_is_clamped():
    mask = np.zeros((6, 8), bool)
    mask[1, 2] = mask[4, 5] = True  # tight box rows 1..4, columns 2..5
    assert bounding_box(mask, margin=2) == (slice(0, 6), slice(0, 8))  # 1-2 -> 0, 5+2 -> 6; 2-2 = 0, 6+2 = 8
    assert bounding_box(mask, margin=(0, 1)) == (slice(1, 5), slice(1, 7))
    assert bounding_box(np.zeros((4, 4), bool), margin=1) is None


def test_union_and_joint_box():
    a = (slice(2, 5), slice(0, 3))
    b = (slice(4, 9), slice(1, 2))
    assert union_box([a, b]) == (slice(2, 9), slice(0, 3))
    assert union_box([a]) == a
    with pytest.raises(ValueError, match="at least one"):
        union_box([])
    m1, m2 = np.zeros((10, 10), bool), np.zeros((10, 10), bool)
    m1[3, 7] = True
    m2[8, 2] = True
    assert joint_bounding_box(m1, m2) == (slice(3, 9), slice(2, 8))
    assert joint_bounding_box(m1, np.zeros((10, 10), bool)) == (slice(3, 4), slice(7, 8))
    assert joint_bounding_box(np.zeros((2, 2), bool)) is None


def test_grow_to_window():
    # axis 0: 2 long, centre (4 + 6) // 2 = 5, window 4 -> start 5 - 2 = 3, [3, 7)
    # axis 1: already 6 >= 4: unchanged; axis 2: near the high edge, shifted in: n - need = 10 - 4 = 6
    box = (slice(4, 6), slice(0, 6), slice(9, 10))
    assert grow_to_window(box, (20, 20, 10), (4, 4, 4)) == (slice(3, 7), slice(0, 6), slice(6, 10))
    # window longer than the axis: the whole axis
    assert grow_to_window((slice(1, 2),), (3,), (8,)) == (slice(0, 3),)


def test_box_on_grid_hand_computed():
    # coarse axis of 5 voxels onto 10 fine ones: scale 2; [1, 3) -> [2, 6); margin 1.5 -> floor(0.5) = 0, ceil(7.5) = 8
    assert box_on_grid((slice(1, 3),), (5,), (10,)) == (slice(2, 6),)
    assert box_on_grid((slice(1, 3),), (5,), (10,), margin=(1.5,)) == (slice(0, 8),)
    # scale 7 / 3: [0, 1) -> [0, ceil(2.33)) = [0, 3); [2, 3) -> [floor(4.67), 7) = [4, 7); margins clamp
    assert box_on_grid((slice(0, 1), slice(2, 3)), (3, 3), (7, 7)) == (slice(0, 3), slice(4, 7))
    assert box_on_grid((slice(0, 1), slice(2, 3)), (3, 3), (7, 7), margin=(9, 9)) == (slice(0, 7), slice(0, 7))
    with pytest.raises(ValueError, match="one entry per axis"):
        box_on_grid((slice(0, 1),), (3, 3), (7, 7))


def test_bounding_box_hand_computed():
    mask = np.zeros((6, 7, 8), dtype=bool)
    mask[1, 2, 3] = True
    mask[4, 5, 6] = True
    assert bounding_box(mask) == (slice(1, 5), slice(2, 6), slice(3, 7))
    assert bounding_box(np.zeros((3, 3, 3), bool)) is None
    assert bounding_box(np.zeros((0, 3), bool)) is None
    labels = np.zeros((5, 5), np.uint8)
    labels[0, 4] = 2  # integers: non-zero is foreground
    assert bounding_box(labels) == (slice(0, 1), slice(4, 5))
    assert bounding_box(np.array([0, 1, 1, 0, 1, 0], bool)) == (slice(1, 5),)


@pytest.mark.parametrize("layout", ["C", "F", "strided", "transposed"])
def test_bounding_box_any_memory_order(layout):
    """Same box in every memory layout, equal to one built from np.nonzero."""
    rng = np.random.default_rng(3)
    for _ in range(30):
        shape = tuple(int(n) for n in rng.integers(1, 9, size=3))
        mask = rng.random(shape) < 0.04
        arr = {"C": mask, "F": np.asfortranarray(mask), "strided": np.repeat(mask, 2, axis=1)[:, ::2],
               "transposed": mask.T.copy().T}[layout]
        idx = np.nonzero(mask)
        expected = None if idx[0].size == 0 else tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)
        assert bounding_box(arr) == expected


def test_bounding_box_does_not_copy_a_fortran_volume():
    """A Fortran-ordered volume (as nibabel returns) is reduced through views: peak extra memory stays far
    below the volume's size."""
    import tracemalloc

    mask = np.zeros((256, 256, 160), dtype=bool, order="F")  # 10.5 MB
    mask[40:90, 100:200, 10:20] = True
    tracemalloc.start()
    box = bounding_box(mask)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert box == (slice(40, 90), slice(100, 200), slice(10, 20))
    assert peak < mask.nbytes / 10


def test_grow_box_clamps():
    box = (slice(1, 3), slice(0, 5))
    assert grow_box(box, 2, (4, 6)) == (slice(0, 4), slice(0, 6))
    assert grow_box(box, (0, 1), (10, 10)) == (slice(1, 3), slice(0, 6))
    with pytest.raises(ValueError, match="one entry per axis"):
        grow_box(box, (1, 1, 1), (4, 6))


def test_touches_border():
    mask = np.zeros((5, 6, 7), dtype=bool)
    assert not touches_border(mask)
    mask[2, 3, 3] = True
    assert not touches_border(mask) and not touches_border(np.asfortranarray(mask))
    for index in [(0, 3, 3), (4, 3, 3), (2, 0, 3), (2, 5, 3), (2, 3, 0), (2, 3, 6)]:
        edge = np.zeros_like(mask)
        edge[index] = True
        assert touches_border(edge) and touches_border(np.asfortranarray(edge)), index
