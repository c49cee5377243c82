"""normalize_intensity: clip, subtract, divide; float32; the input is never modified."""

from __future__ import annotations

import numpy as np
import torch

from medseg.preprocessing.intensity import normalize_intensity
from medseg.preprocessing.plan import PreprocessingPlan


def test_normalization_formula():
    hu = np.array([-1000, -150, 0, 50, 250, 3000], dtype=np.int16)
    window = PreprocessingPlan.window((1, 1, 1), (-150, 250))
    np.testing.assert_allclose(normalize_intensity(hu, window), [-1, -1, -0.25, 0, 1, 1])
    zscore = PreprocessingPlan((1, 1, 1), "ct_zscore", clip_hu=(-10.0, 90.0), mean=55.0, std=20.0)
    expected = (np.clip(hu.astype(float), -10, 90) - 55) / 20
    np.testing.assert_allclose(normalize_intensity(hu, zscore), expected, rtol=1e-6)
    torch_out = normalize_intensity(torch.from_numpy(hu), zscore)
    assert torch_out.dtype == torch.float32
    np.testing.assert_allclose(torch_out.numpy(), expected, rtol=1e-6)





def test_input_is_untouched_and_output_is_new():
    window = PreprocessingPlan.window((1, 1, 1), (-100, 100))  # mean 0, half-width 100
    hu = np.array([[-300.0, 50.0], [100.0, 400.0]], dtype=np.float32)
    before = hu.copy()
    out = normalize_intensity(hu, window)
    np.testing.assert_array_equal(hu, before)
    assert out is not hu and out.dtype == np.float32
    np.testing.assert_allclose(out, [[-1.0, 0.5], [1.0, 1.0]])
    tensor = torch.from_numpy(before.copy())
    t_out = normalize_intensity(tensor, window)
    torch.testing.assert_close(tensor, torch.from_numpy(before))  # in-place work happens on a copy
    torch.testing.assert_close(t_out, torch.tensor([[-1.0, 0.5], [1.0, 1.0]]))
