"""The LiTS label map, its regions and the tumor burden (hand-computed values)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.labels import (
    LITS_LABELS,
    REGION_LABELS,
    is_lits,
    lits_labels,
    liver_mask,
    region_masks,
    tumor_burden_percent,
    tumor_mask,
)

LABELS = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)


def test_label_map_and_copies():
    assert dict(LITS_LABELS) == {"0": "background", "1": "liver", "2": "tumor"}
    copy = lits_labels()
    copy["3"] = "vessel"
    assert "3" not in LITS_LABELS  # a fresh dict every time
    with pytest.raises(TypeError):
        LITS_LABELS["1"] = "spleen"
    assert dict(REGION_LABELS) == {"liver": (1, 2), "tumor": (2,)}


def test_region_masks_are_nested():
    masks = region_masks(LABELS)
    assert masks["liver"].tolist() == [[False, True, True], [True, True, False]]  # liver includes tumor
    assert masks["parenchyma"].tolist() == [[False, True, False], [False, True, False]]
    assert masks["tumor"].tolist() == [[False, False, True], [True, False, False]]
    np.testing.assert_array_equal(liver_mask(LABELS), masks["liver"])
    np.testing.assert_array_equal(tumor_mask(LABELS), masks["tumor"])
    for region, values in REGION_LABELS.items():
        np.testing.assert_array_equal(masks[region], np.isin(LABELS, values))


def test_is_lits():
    assert is_lits({"0": "background", "1": "liver", "2": "tumor"})
    assert is_lits({0: "background", 1: "liver", 2: "tumor", 3: "vessel"})  # int keys, extra classes
    assert not is_lits({"0": "background", "1": "kidney", "2": "tumor"})
    assert not is_lits({"0": "background", "1": "liver"})


def test_tumor_burden_percent():
    assert tumor_burden_percent(200, 50) == 25.0  # 50 of 200 liver voxels
    assert tumor_burden_percent(1500.0, 15.0) == 1.0
    assert tumor_burden_percent(0, 0) == 0.0  # no liver, no tumor: nothing to report
    assert math.isnan(tumor_burden_percent(0, 3))  # tumor without liver: undefined


def test_without_unannotated_sets_ignored_voxels_to_background_in_both_maps():
    from medseg.labels import without_unannotated

    ref = np.array([[0, 1, 3], [2, 3, 1]], dtype=np.uint8)
    pred = np.array([[0, 2, 2], [2, 1, 1]], dtype=np.uint8)
    p, r = without_unannotated(pred, ref, 3)
    np.testing.assert_array_equal(r, [[0, 1, 0], [2, 0, 1]])
    np.testing.assert_array_equal(p, [[0, 2, 0], [2, 0, 1]])
    assert p.dtype == np.uint8 and without_unannotated(pred, ref, None) == (pred, ref)
