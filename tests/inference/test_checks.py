"""Scan checks around prediction: refusals, warnings against the run's plan, --strict."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import DataError
from medseg.inference.checks import ScanChecks, refuse_unusable_scan
from medseg.io import Volume, affine_from_geometry
from medseg.preprocessing import PreprocessingPlan


@pytest.fixture
def scan():
    """A 64x64x20 'abdomen' at 5 x 5 x 5 mm (320 mm across): body at 40 HU in air, a 'liver' at 60 HU."""
    array = np.full((64, 64, 20), -1000, np.int16)
    array[8:56, 8:56, :] = 40
    array[20:40, 20:40, 5:15] = 60
    return Volume(array, affine_from_geometry((5.0, 5.0, 5.0)), {"path": "scan.nii.gz", "format": "nifti"})


@pytest.fixture
def labels(scan):
    out = np.zeros(scan.shape, np.uint8)
    out[20:40, 20:40, 5:15] = 1
    return scan.with_array(out)


PLAN = PreprocessingPlan(target_spacing_mm=(4.0, 4.0, 5.0), normalization="ct_zscore", clip_hu=(-20.0, 200.0),
                         mean=100.0, std=40.0)


def test_a_usual_scan_has_no_findings(scan, labels):
    checks = ScanChecks(plan=PLAN)
    assert checks.before(scan) == [] and checks.after(scan, labels) == []


def test_spacing_far_from_the_plan(scan):
    fine = Volume(scan.array, affine_from_geometry((0.98, 0.98, 5.0)), scan.meta)  # 0.98 mm vs a 4 mm model
    findings = ScanChecks(plan=PLAN, fov_mm=(10, 700)).before(fine)
    assert findings == ["spacing: voxel size 0.98x0.98x5 mm (R, A, S) is far from the model's 4x4x5 mm along R, A "
                        "(more than 2.5x)"]


def test_spacing_is_compared_on_canonical_axes(scan):
    # stored with the slice axis first: 5 mm along S is the plan's 5 mm, whatever the voxel order
    permuted = Volume(np.ascontiguousarray(scan.array.transpose(2, 0, 1)),
                      affine_from_geometry((5.0, 5.0, 5.0), direction=np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0.0]])),
                      scan.meta)
    assert ScanChecks(plan=PLAN).before(permuted) == []


def test_field_of_view_modality_and_no_body(scan):
    small = Volume(scan.array[:20, :20], scan.affine, scan.meta)  # 100 x 100 mm
    assert ScanChecks(plan=PLAN).before(small)[0].startswith("field_of_view: 100x100 mm in-plane")
    mr = Volume(scan.array, scan.affine, {"path": "mr/", "format": "dicom", "modality": "MR"})
    assert ScanChecks(plan=PLAN).before(mr) == ["modality: 'MR', not CT; values may not be Hounsfield units"]
    air = scan.with_array(np.full(scan.shape, -1000, np.int16))
    air.array[0, 0, 0] = 0
    (finding,) = ScanChecks(plan=PLAN).before(air)
    share = 100 / air.array.size
    assert finding == f"no_body: only {share:.2f}% of the voxels are above -500 HU; no patient in the scan?"


def test_predicted_liver_outside_the_training_intensities(scan, labels):
    raw = scan.with_array((scan.array.astype(np.int32) + 1024).astype(np.int16))  # rescale intercept forgotten
    (finding,) = ScanChecks(plan=PLAN, min_body_fraction=0).after(raw, labels)
    assert finding.startswith("liver_hu: median 1084 HU inside the predicted liver, outside the training foreground "
                              "range -20..200 HU")
    assert ScanChecks(plan=PLAN).after(scan, labels.with_array(np.zeros_like(labels.array))) == []


def test_strict_makes_findings_errors(scan):
    fine = Volume(scan.array, affine_from_geometry((0.98, 0.98, 5.0)), scan.meta)
    with pytest.raises(DataError, match=r"^scan\.nii\.gz: --strict: spacing: voxel size 0\.98x0\.98x5 mm"):
        ScanChecks(plan=PLAN, strict=True, fov_mm=(10, 700)).before(fine)


def test_refusals(scan, labels):
    values = scan.array.astype(np.float32)
    values[1, 2, 3] = np.nan
    with pytest.raises(DataError, match=r"^scan\.nii\.gz: 1 NaN/inf voxels in the scan"):
        refuse_unusable_scan(scan.with_array(values))
    with pytest.raises(DataError, match="values 0, 1 only: this is a label map"):
        ScanChecks(plan=PLAN).before(labels)


def test_liver_median_taken_in_the_label_box_equals_the_whole_map_median(scan, labels):
    """after() reads the liver's HU inside the label map's box: the same median as over the whole scan."""
    rng = np.random.default_rng(0)
    noisy = scan.with_array((scan.array + rng.integers(-400, 400, scan.shape)).astype(np.int16))
    raw = noisy.with_array((noisy.array.astype(np.int32) + 1024).astype(np.int16))
    mask = (labels.array == 1) | (labels.array == 2)
    expected = float(np.median(raw.array[mask]))
    (finding,) = ScanChecks(plan=PLAN, min_body_fraction=0).after(raw, labels)
    assert finding.startswith(f"liver_hu: median {expected:.0f} HU inside the predicted liver")
