"""Label maps from other tools: the mapping, the value checks, and read_label_map on files."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.data import make_phantom
from medseg.errors import ConfigError, DataError
from medseg.io import LabelMapping, read_label_map, write_volume
from medseg.io.label_map import apply_label_mapping, label_value_problems, looks_like_label_map


@pytest.fixture(scope="module")
def case():
    return make_phantom(size="tiny", seed=0, index=3)


@pytest.mark.parametrize(("specs", "liver", "tumor"), [
    (["liver=5"], (5,), ()),
    (["liver=1", "tumor=2,3"], (1,), (2, 3)),
    (["liver=255"], (255,), ()),
    (['liver="Liver"', "tumor='Liver tumor'"], ("Liver",), ("Liver tumor",)),
    ({"liver": 5, "tumor": [6, 7]}, (5,), (6, 7)),
    (["liver=5", "liver=8"], (5, 8), ()),  # repeated regions add up
    (['tumor="Lesion, segment VII"'], (), ("Lesion, segment VII",)),
])
def test_parse(specs, liver, tumor):
    mapping = LabelMapping.parse(specs)
    assert (mapping.liver, mapping.tumor, mapping.explicit) == (liver, tumor, True)
    assert mapping.to_json() == {"liver": list(liver), "tumor": list(tumor), "explicit": True}


@pytest.mark.parametrize(("specs", "text"), [
    (["spleen=1"], "unknown region"), (["liver"], "REGION=VALUES"), (["liver=1", "tumor=1"], "both liver and tumor"),
    (["liver="], "needs a value"), ({"liver": 1.5}, "not an integer"),
    # issue #29.15: liver=0 counted the background as liver (31,860 mL), liver=-1 gave 0 mL
    (["liver=0"], r"liver=0: label values of a region are positive integers \(0 is the background\)"),
    (["liver=-1"], "liver=-1: label values"), ({"tumor": [2, 0]}, "tumor=0"), ({"liver": -3}, "liver=-3"),
])
def test_parse_refuses(specs, text):
    with pytest.raises(ConfigError, match=text):
        LabelMapping.parse(specs)


def test_default_is_lits():
    assert LabelMapping.parse(None) == LabelMapping() and not LabelMapping().explicit


def test_mapping_recovers_the_original_map(case):
    truth = case.label.array
    # another tool's multi-label map: liver 5, tumor 7, and spleen (1) / kidney (2) elsewhere
    other = np.where(truth == 1, 5, np.where(truth == 2, 7, 0)).astype(np.uint8)
    other[:4, :4, :4], other[-4:, -4:, -4:] = 1, 2
    assert label_value_problems(other) == [
        "label values 5, 7 outside {0, 1, 2}; a map from another tool? map its values with --labels (e.g. "
        "--labels liver=5)"]
    np.testing.assert_array_equal(apply_label_mapping(other, LabelMapping.parse(["liver=5", "tumor=7"])), truth)
    # 0/255 binary mask: liver (tumor included) only
    binary = np.where(truth > 0, 255, 0).astype(np.uint8)
    np.testing.assert_array_equal(apply_label_mapping(binary, LabelMapping.parse(["liver=255"])), (truth > 0) * 1)
    # tumor split in two classes
    split = truth.copy()
    split[(truth == 2) & (np.indices(truth.shape)[0] > 24)] = 3
    assert np.count_nonzero(split == 3) > 0
    np.testing.assert_array_equal(apply_label_mapping(split, LabelMapping.parse(["liver=1", "tumor=2,3"])), truth)


@pytest.mark.parametrize(("values", "text"), [
    (np.array([0, 1, np.nan], np.float32), "1 NaN/inf voxels"),
    (np.array([0, 1, 1.5], np.float32), "1 non-integer label values (e.g. 1.5)"),
    (np.array([0, 1, 2, 3], np.uint8), "label values 3 outside {0, 1, 2}"),
    (np.arange(-1024, 1000, dtype=np.int16), "this looks like a CT scan, not a label map"),
])
def test_bad_values(values, text):
    problems = label_value_problems(values)
    assert len(problems) == 1 and text in problems[0]
    with pytest.raises(DataError, match=text.replace("(", r"\(").replace(")", r"\)")):
        apply_label_mapping(values, path="x.nii.gz")


def test_mapping_still_refuses_nan_and_fractions():
    with pytest.raises(DataError, match="non-integer"):
        apply_label_mapping(np.array([0, 5, 5.5]), LabelMapping.parse(["liver=5"]))


def test_segment_labels_need_a_seg():
    with pytest.raises(DataError, match="only DICOM SEG files have segment labels"):
        apply_label_mapping(np.array([0, 1]), LabelMapping.parse(['liver="Liver"']))


def test_looks_like_label_map(case):
    expected = "values 0, 1, 2 only: this is a label map (segmentation), not a CT scan"
    assert looks_like_label_map(case.label.array) == expected
    assert looks_like_label_map(np.where(case.label.array > 0, 255, 0)).startswith("values 0, 255 only")
    assert looks_like_label_map(case.image.array) is None
    assert looks_like_label_map(np.full((4, 4, 4), 40)) is None  # constant: another problem


def _multi_label_map(case, classes: int) -> np.ndarray:
    """A TotalSegmentator-like map: the phantom's body cut into ``classes`` organ slabs, 0 outside."""
    body = case.image.array > -500
    out = np.zeros(body.shape, dtype=np.uint8)
    out[body] = np.arange(np.count_nonzero(body)) * classes // np.count_nonzero(body) + 1
    return out


def test_looks_like_label_map_takes_multi_label_maps_of_other_tools(case):
    totalseg = _multi_label_map(case, 40)
    assert len(np.unique(totalseg)) == 41 and (totalseg == 0).mean() > 1 / 41
    assert looks_like_label_map(totalseg) == ("41 integer values 0..40, mostly 0: this is a multi-label map "
                                              "(segmentation), not a CT scan")
    assert looks_like_label_map(totalseg.astype(np.uint16) * 300).startswith("41 integer values 0..12000")
    # a CT (air at -1000) and a CT shifted to non-negative values (0 is then rare) are scans
    assert looks_like_label_map(case.image.array) is None
    shifted = case.image.array - case.image.array.min()
    assert shifted.min() == 0 and looks_like_label_map(shifted) is None


def test_a_mapping_never_makes_a_ct_a_label_map(case):
    with pytest.raises(DataError, match="looks like a CT scan, not a label map"):
        apply_label_mapping(case.image.array, LabelMapping.parse(["liver=5"]))
    mapped = apply_label_mapping(_multi_label_map(case, 40), LabelMapping.parse(["liver=5"]))
    assert mapped.sum() == np.count_nonzero(_multi_label_map(case, 40) == 5)


def test_read_label_map_files(case, tmp_path):
    other = np.where(case.label.array == 1, 5, np.where(case.label.array == 2, 6, 0)).astype(np.uint8)
    path = write_volume(case.label.with_array(other), tmp_path / "totalseg.nii.gz", label=True)
    with pytest.raises(DataError, match=f"{path}: label values 5, 6 outside"):
        read_label_map(path)
    mapped = read_label_map(path, labels=["liver=5", "tumor=6"], like=case.image)
    np.testing.assert_array_equal(mapped.array, case.label.array)
    assert mapped.meta["label_mapping"] == {"liver": [5], "tumor": [6], "explicit": True}
    ct = write_volume(case.image, tmp_path / "ct.nii.gz")
    with pytest.raises(DataError, match="looks like a CT scan"):
        read_label_map(ct)


def test_an_ignore_value_is_kept_only_when_declared():
    from medseg.io.label_map import LITS_MAPPING

    array = np.array([0, 1, 2, 3, 3], dtype=np.uint8)
    with pytest.raises(DataError, match="label values 3 outside"):
        apply_label_mapping(array, LITS_MAPPING)
    np.testing.assert_array_equal(apply_label_mapping(array, LITS_MAPPING.with_ignore(3)), array)
    mapping = LabelMapping.parse(["liver=5", "tumor=9"]).with_ignore(200)
    mapped = apply_label_mapping(np.array([0, 5, 9, 200, 7]), mapping)
    np.testing.assert_array_equal(mapped, [0, 1, 2, 200, 0])
    assert LITS_MAPPING.with_ignore(3).to_json()["ignore"] == 3 and "ignore" not in LITS_MAPPING.to_json()
    for bad in (1, 0, 256):
        with pytest.raises(ConfigError, match=r"the ignore value must be an integer in 3\.\.255"):
            LITS_MAPPING.with_ignore(bad)
    with pytest.raises(ConfigError, match="the ignore value must be an integer"):
        LabelMapping(ignore=True)
    with pytest.raises(ConfigError, match="also mapped"):
        LabelMapping.parse(["liver=5"]).with_ignore(5)
