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


def test_library_plotting_leaves_the_matplotlib_backend_alone(tmp_path):
    """``import medseg`` and its plotting functions never switch a notebook's backend (issue #16)."""
    import subprocess
    import sys

    code = f"""
import matplotlib
matplotlib.use("svg")
import numpy as np, pandas as pd
import medseg, medseg.viz, medseg.evaluation
from medseg.data import make_phantom
from medseg.evaluation.report import plot_boxplots, plot_volume_agreement
from medseg.training.records import plot_curves
case = make_phantom(size="tiny", seed=0, index=0)
medseg.viz.plot_overlays(case.image, {{"reference": case.label}}, r"{tmp_path}/o.png")
frame = pd.DataFrame({{"case": ["a", "b"], "liver_dice": [0.9, 0.8], "tumor_dice": [0.5, 0.7],
                      "liver_hd95_mm": [3.0, 4.0], "tumor_hd95_mm": [5.0, 6.0],
                      "liver_pred_volume_ml": [1.0, 2.0], "liver_ref_volume_ml": [1.1, 2.1],
                      "tumor_pred_volume_ml": [0.1, 0.2], "tumor_ref_volume_ml": [0.1, 0.3]}})
plot_boxplots(frame, r"{tmp_path}/b.png")
plot_volume_agreement(frame, r"{tmp_path}/v.png")
plot_curves(r"{tmp_path}/c.png", [{{"epoch": 1, "train_loss": 1.0, "val_dice_liver": 0.5}}])
print(matplotlib.get_backend())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "svg"
    for name in ("o", "b", "v", "c"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
