"""binary_metrics: every per-mask figure of one pair, its empty-mask conventions and argument checks
(distances against MONAI: test_surface.py)."""

import math

import numpy as np
import pytest

from medseg.evaluation import BINARY_METRIC_KEYS, binary_metrics


def test_hand_computed_cubes():
    """A 4x4x4 cube against the same cube shifted by one voxel along axis 0 (2 mm): 48 shared voxels."""
    ref = np.zeros((10, 10, 10), bool)
    ref[2:6, 2:6, 2:6] = True
    pred = np.roll(ref, 1, axis=0)
    m = binary_metrics(pred, ref, spacing_mm=(2.0, 1.0, 1.0))
    assert tuple(m) == BINARY_METRIC_KEYS
    assert m["dice"] == pytest.approx(2 * 48 / 128) and m["jaccard"] == pytest.approx(48 / 80)
    assert m["voe"] == pytest.approx(1 - 48 / 80) and m["rvd"] == 0.0
    assert m["pred_volume_ml"] == m["ref_volume_ml"] == pytest.approx(64 * 2.0 / 1000)
    assert m["mssd_mm"] == 2.0  # the farthest surface voxel is one 2 mm step away
    grown = np.zeros_like(ref)
    grown[2:7, 2:6, 2:6] = True  # 80 voxels: 25 % too large
    assert binary_metrics(grown, ref, spacing_mm=(1, 1, 1))["rvd"] == pytest.approx(0.25)
    labels = pred.astype(np.uint8) * 2  # nonzero = foreground
    assert binary_metrics(labels, ref, spacing_mm=(2.0, 1.0, 1.0)) == m


def test_empty_conventions():
    empty = np.zeros((8, 8, 8), bool)
    some = empty.copy()
    some[2:5, 2:5, 2:5] = True
    both = binary_metrics(empty, empty, spacing_mm=(1, 1, 1))
    assert both["dice"] == 1.0 and both["nsd"] == 1.0
    assert both["hd95_mm"] == both["assd_mm"] == both["mssd_mm"] == both["rmsd_mm"] == 0.0
    for pred, ref in ((some, empty), (empty, some)):
        one = binary_metrics(pred, ref, spacing_mm=(1, 1, 1))
        assert one["dice"] == 0.0 and one["nsd"] == 0.0
        assert all(math.isnan(one[k]) for k in ("hd95_mm", "assd_mm", "mssd_mm", "rmsd_mm"))
    assert binary_metrics(some, empty, spacing_mm=(2, 1, 1))["pred_volume_ml"] == pytest.approx(27 * 2 / 1000)


def test_nsd_tolerance_is_inclusive():
    ref = np.zeros((12, 12, 12), bool)
    ref[3:8, 3:8, 3:8] = True
    pred = np.roll(ref, 2, axis=0)
    # every distance is 0, 1 or 2 voxels of 0.5 mm along axis 0: all within 1.0 mm
    assert binary_metrics(pred, ref, spacing_mm=(0.5, 1, 1), nsd_tolerance_mm=1.0)["nsd"] == 1.0
    assert binary_metrics(pred, ref, spacing_mm=(0.5, 1, 1), nsd_tolerance_mm=0.9)["nsd"] < 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"spacing_mm": (1, 1)}, "spacing_mm"),
        ({"spacing_mm": (1, 0, 1)}, "spacing_mm"),
        ({"spacing_mm": (1, 1, 1), "nsd_tolerance_mm": -1.0}, "nsd_tolerance_mm"),
    ],
)
def test_bad_arguments(kwargs, match):
    mask = np.ones((3, 3, 3), bool)
    with pytest.raises(ValueError, match=match):
        binary_metrics(mask, mask, **kwargs)
    with pytest.raises(ValueError, match="same shape"):
        binary_metrics(mask, mask[:2], spacing_mm=(1, 1, 1))
