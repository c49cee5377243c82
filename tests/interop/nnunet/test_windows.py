"""nnU-Net's window steps and Gaussian weights reproduced: equal to nnunetv2's own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.interop.nnunet.windows import nnunet_gaussian, nnunet_steps, nnunet_window_slices

swp = pytest.importorskip("nnunetv2.inference.sliding_window_prediction")


@pytest.mark.parametrize(("image", "window", "step"), [
    ((110, 64, 64), (64, 64, 64), 0.5),  # nnU-Net's own example: 0, 23, 46
    ((95, 18, 95), (32, 16, 32), 0.5),
    ((200, 33, 97), (128, 32, 96), 0.5),
    ((40, 40, 40), (32, 16, 8), 0.25),
])
def test_steps_equal_nnunet(image, window, step):
    assert nnunet_steps(image, window, step) == swp.compute_steps_for_sliding_window(image, window, step)


def test_nnunet_example_and_monai_differ():
    assert nnunet_steps((110,), (64,), 0.5) == [[0, 23, 46]]  # MONAI's grid: 0, 32, 46
    slices = nnunet_window_slices((110, 64), (64, 64), 0.5)
    assert [(s[0].start, s[1].start) for s in slices] == [(0, 0), (23, 0), (46, 0)]


@pytest.mark.parametrize("window", [(32, 16, 32), (24, 40, 40), (128, 128, 128)])
def test_gaussian_equals_nnunet(window):
    theirs = swp.compute_gaussian(window, sigma_scale=1.0 / 8, value_scaling_factor=10, device=torch.device("cpu"))
    ours = nnunet_gaussian(window)
    np.testing.assert_allclose(ours.numpy(), theirs.float().numpy() / 10.0, rtol=1e-6)
    assert float(ours.max()) == 1.0 and float(ours.min()) > 0
