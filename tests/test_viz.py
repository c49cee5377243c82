"""Display orientation and overlay figures."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.data import make_phantom
from medseg.io import Volume, affine_from_geometry
from medseg.viz import axial_slice, choose_slices, plot_overlays


@pytest.mark.parametrize("index", range(4))  # RAS, LPS, LPI, ALS storage
def test_axial_slice_is_radiological_whatever_the_storage(index):
    case = make_phantom(size="tiny", seed=0, index=index)
    z = choose_slices(case.label, count=1)[0]
    liver = axial_slice(case.label, z) > 0
    cols = np.flatnonzero(liver.any(axis=0))
    # the liver lies on the patient's right, which the radiological convention shows on the viewer's left
    assert cols.mean() < liver.shape[1] / 2
    spine = axial_slice(case.image, z) > 400
    rows = np.flatnonzero(spine.any(axis=1))
    assert rows.mean() > liver.shape[0] / 2  # spine is posterior: lower half of the picture


def test_axial_slice_marker_position():
    array = np.zeros((4, 5, 3), np.int16)
    array[3, 4, 1] = 1  # most right (+x), most anterior (+y) in RAS storage
    vol = Volume(array, affine_from_geometry((1.0, 1.0, 1.0)))
    sl = axial_slice(vol, 1)
    assert sl.shape == (5, 4) and sl[0, 0] == 1  # top-left: anterior, patient's right


def test_plot_overlays_writes_png(tmp_path, tiny_case):
    out = plot_overlays(tiny_case.image, {"reference": tiny_case.label}, tmp_path / "o.png", title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name != "o.png"]
