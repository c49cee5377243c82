"""Lesion boxes as weak tumor labels (issue #30), checked against hand-placed boxes."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.data.boxes import LesionBox, box_labels, boxes_from_labels, read_boxes_csv, write_boxes_csv
from medseg.errors import DataError
from medseg.io import affine_from_geometry

IGNORE = 3
SPACING = (2.0, 2.0, 4.0)
ORIGIN = (-10.0, 5.0, 100.0)


@pytest.fixture
def liver():
    labels = np.zeros((20, 20, 10), np.uint8)
    labels[2:16, 2:16, 1:9] = 1
    labels[6:9, 7:10, 3:6] = 2  # a 3 x 3 x 3 lesion
    return labels


def _world(index):
    return np.asarray(ORIGIN) + np.asarray(index) * np.asarray(SPACING)


def test_tight_box_of_a_lesion_is_its_voxel_edges_in_world_mm(liver):
    affine = affine_from_geometry(SPACING, origin_mm=ORIGIN)
    (box,) = boxes_from_labels(liver, affine)
    np.testing.assert_allclose(box.low, _world((6, 7, 3)) - np.asarray(SPACING) / 2)
    np.testing.assert_allclose(box.high, _world((8, 9, 5)) + np.asarray(SPACING) / 2)


def test_box_labels_outside_core_ignore_and_background(liver):
    affine = affine_from_geometry(SPACING, origin_mm=ORIGIN)
    # a box around voxels x 4..10, y 5..11, z 2..6 (centres), reaching outside the liver along nothing
    box = LesionBox(tuple(_world((4, 5, 2)) - 0.1), tuple(_world((10, 11, 6)) + 0.1))
    out = box_labels(liver, [box], affine, ignore_label=IGNORE, core=0.5)
    in_box = np.zeros(liver.shape, bool)
    in_box[4:11, 5:12, 2:7] = True
    livermask = liver > 0
    np.testing.assert_array_equal(out[~in_box], livermask[~in_box].astype(np.uint8))  # dense liver outside
    # the core: the inscribed ellipsoid at half size, centred on voxel (7, 8, 4), semi-axes 0.5 * (6.1, 6.1, 8.1) mm
    x, y, z = np.meshgrid(*[np.arange(n) for n in liver.shape], indexing="ij")
    half = 0.5 * (np.array([12.2, 12.2, 16.2]) / 2)
    core = (((x - 7) * 2 / half[0]) ** 2 + ((y - 8) * 2 / half[1]) ** 2 + ((z - 4) * 4 / half[2]) ** 2 <= 1) & in_box
    np.testing.assert_array_equal(out == 2, core)
    np.testing.assert_array_equal(out == IGNORE, in_box & ~core & livermask)
    # by hand: (2 / 3.05)^2 = 0.43, (4 / 4.05)^2 = 0.975: the centre, its 6 face neighbours and the 4 x-y
    # diagonals (0.86), not the diagonals with z (1.40)
    assert core.sum() == 11


def test_box_voxels_outside_the_liver_are_background(liver):
    affine = affine_from_geometry(SPACING, origin_mm=ORIGIN)
    box = LesionBox(tuple(_world((0, 0, 0))), tuple(_world((3, 3, 2))))
    out = box_labels(liver, [box], affine, ignore_label=IGNORE, core=0.0)
    assert (out[0:2, 0:4, 0:3] == 0).all() and (out[2:4, 2:4, 1:3] == IGNORE).all() and not (out == 2).any()


def test_boxes_csv_round_trip_and_bad_rows(tmp_path):
    boxes = {"7": [LesionBox((1.0, 2.0, 3.0), (4.0, 5.0, 6.0))], "9": [LesionBox((0, 0, 0), (1, 1, 1))] * 2}
    path = write_boxes_csv(tmp_path / "boxes.csv", boxes)
    assert read_boxes_csv(path) == {k: [LesionBox(tuple(map(float, b.low)), tuple(map(float, b.high))) for b in v]
                                    for k, v in boxes.items()}
    bad = tmp_path / "bad.csv"
    bad.write_text("case,x_min,y_min,z_min,x_max,y_max,z_max\n1,5,0,0,4,1,1\n")
    with pytest.raises(DataError, match="row 2: a box needs min <= max"):
        read_boxes_csv(bad)
    bad.write_text("case,x_min,y_min,z_min,x_max,y_max,z_max,class\n1,0,0,0,4,1,1,liver\n")
    with pytest.raises(DataError, match="boxes are weak labels for tumors"):
        read_boxes_csv(bad)
    bad.write_text("case,x_min\n1,0\n")
    with pytest.raises(DataError, match="missing y_min"):
        read_boxes_csv(bad)
