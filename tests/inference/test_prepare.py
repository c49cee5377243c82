"""prepare_scan equals the preprocessing module's preprocess_image (and its nearest-neighbour body mask)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.data import make_phantom
from medseg.inference.prepare import nearest_indices, prepare_scan
from medseg.inference.restore import argmax_classes
from medseg.io import to_canonical
from medseg.preprocessing import PreprocessingPlan, preprocess_image, resample_array


@pytest.mark.parametrize("index", [0, 1, 2, 3])  # RAS, LPS, LPI, ALS
@pytest.mark.parametrize("spacing", [(5.0, 5.5, 6.0), (11.0, 9.0, 13.0), (3.3, 7.1, 2.9)])
def test_prepare_scan_equals_preprocess_image(index, spacing):
    case = make_phantom(size="tiny", seed=0, index=index)
    plan = PreprocessingPlan(spacing, "ct_zscore", (-60.0, 180.0), 60.0, 40.0)
    ref, ref_record = preprocess_image(case.image, plan)
    image, record, body = prepare_scan(case.image, plan, slices_per_block=3)
    np.testing.assert_allclose(image, ref, atol=1e-4, rtol=0)
    for key, value in ref_record.to_dict().items():
        np.testing.assert_allclose(record.to_dict()[key], value, err_msg=key)
    canonical, _ = to_canonical(case.image.with_array(case.image.array > -500))
    expected = resample_array(torch.from_numpy(canonical.array), out_shape=record.resampled_shape, mode="nearest")
    assert torch.equal(body, expected)
    assert case.image.array.dtype == np.int16  # input untouched (still the stored HU)


def test_no_mask_and_nearest_indices():
    case = make_phantom(size="tiny", seed=0, index=1)
    _, _, body = prepare_scan(case.image, PreprocessingPlan((8.0, 8.0, 8.0)), air_threshold_hu=None)
    assert body is None
    ramp = torch.arange(10, dtype=torch.float32).reshape(1, 1, 10, 1, 1)
    ref = torch.nn.functional.interpolate(ramp, size=(4, 1, 1), mode="nearest-exact").flatten().long()
    assert torch.equal(nearest_indices(10, 4, axis=0), ref)
    assert nearest_indices(4, 8, axis=2).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_argmax_classes_matches_argmax_including_ties():
    scores = torch.randn(4, 7, 5, 3, generator=torch.Generator().manual_seed(0)).round()  # many ties
    assert torch.equal(argmax_classes(scores), scores.argmax(0).to(torch.uint8))


@pytest.mark.parametrize("index", [0, 1, 3])  # RAS (no flip), LPS and ALS (flipped/permuted views)
def test_prepare_scan_same_for_any_memory_order(index):
    """A NIfTI scan comes in Fortran order (read without a transposing copy): bitwise the same input and mask
    as from a C-ordered or read-only copy of the voxels."""
    case = make_phantom(size="tiny", seed=0, index=index)
    plan = PreprocessingPlan((5.0, 5.5, 6.0), "ct_zscore", (-60.0, 180.0), 60.0, 40.0)
    ref, _, ref_body = prepare_scan(case.image, plan, slices_per_block=3)
    fortran = np.asfortranarray(case.image.array)
    frozen = case.image.array.copy()
    frozen.flags.writeable = False
    for array in (fortran, frozen):
        image, _, body = prepare_scan(case.image.with_array(array), plan, slices_per_block=3)
        assert np.array_equal(image, ref) and torch.equal(body, ref_body)
