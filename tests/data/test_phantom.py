"""The synthetic LiTS-like phantom: determinism, anatomy, labels and manifest truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from medseg.data import make_phantom
from medseg.io import read_volume, to_canonical


def test_deterministic_per_seed_and_index():
    a = make_phantom(size="tiny", seed=5, index=2)
    b = make_phantom(size="tiny", seed=5, index=2)
    c = make_phantom(size="tiny", seed=6, index=2)
    np.testing.assert_array_equal(a.image.array, b.image.array)
    np.testing.assert_array_equal(a.label.array, b.label.array)
    assert not np.array_equal(a.image.array, c.image.array) or a.image.shape != c.image.shape


@pytest.mark.parametrize("index", range(8))
def test_labels_and_hu_are_lits_like(index):
    case = make_phantom(size="tiny", seed=1, index=index)
    labels, hu = case.label.array, case.image.array
    assert hu.dtype == np.int16 and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2} and (labels == 1).any()
    assert case.image.same_geometry(case.label)
    assert hu.min() < -900  # air
    liver_hu = np.median(hu[labels == 1])
    assert 45 < liver_hu < 75
    if (labels == 2).any():
        assert 10 < np.median(hu[labels == 2]) < liver_hu  # hypodense tumors
    # truth in info matches the label map
    voxel_ml = np.prod(case.image.spacing_mm) / 1000
    assert case.info["liver_ml"] == pytest.approx(np.count_nonzero(labels) * voxel_ml)
    assert case.info["tumor_ml"] == pytest.approx(np.count_nonzero(labels == 2) * voxel_ml)
    assert 900 < case.info["liver_ml"] < 2600  # adult liver, mL
    n6 = ndimage.label(labels == 2)[1]
    assert case.info["lesion_count"] == n6 == len(case.info["lesions"]) <= 6


def test_storage_orientations_vary_but_world_anatomy_is_consistent():
    cases = [make_phantom(size="tiny", seed=0, index=i) for i in range(4)]
    assert len({c.info["axcodes"] for c in cases}) == 4
    for case in cases:
        canon, _ = to_canonical(case.label)
        liver = np.argwhere(canon.array > 0)
        centre_world = canon.world_coordinates(liver.mean(0))[0]
        assert centre_world[0] > 20  # liver on the patient's right (RAS +x)


def test_lits_size_spec():
    from medseg.data.phantom import PHANTOM_SIZES

    spec = PHANTOM_SIZES["lits"]
    assert spec.in_plane == 512 and 0.68 <= spec.spacing_xy_mm[0] and spec.spacing_xy_mm[1] <= 0.82
    assert min(spec.slice_mm) >= 1.0 and max(spec.slice_mm) <= 5.0 and spec.max_slices == 300


def test_dataset_written_in_lits_layout_with_manifest(tiny_dataset):
    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    assert len(manifest["cases"]) == 4
    for entry in manifest["cases"]:
        image = read_volume(tiny_dataset / entry["image"])
        label = read_volume(tiny_dataset / entry["label"])
        assert entry["image"] == f"volume-{entry['case_id']}.nii.gz"
        assert image.same_geometry(label)
        voxel_ml = np.prod(label.spacing_mm) / 1000
        assert entry["tumor_ml"] == pytest.approx(np.count_nonzero(label.array == 2) * voxel_ml, rel=1e-6)
