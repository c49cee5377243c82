"""Probability maps on the scan's grid: shape and affine of the scan, values those of predict_probabilities
within the uint8 step, entropy against scipy, quantisation exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import entropy

from medseg.data import make_phantom
from medseg.inference import InferenceSettings, Predictor
from medseg.inference.probability_maps import PROBABILITY_SCALE, normalised_entropy, quantise


@pytest.mark.parametrize("index", [0, 3])  # stored RAS and ALS (permuted axes)
def test_maps_are_on_the_scan_grid_and_equal_the_probabilities(trained_run, index):
    image = make_phantom(size="tiny", seed=4, index=index).image
    predictor = Predictor.from_run(trained_run, device="cpu", settings=InferenceSettings(mode="full",
                                                                                          probabilities=True))
    labels, stats = predictor.predict(image)
    maps = stats["probability_maps"]
    probabilities = predictor.predict_probabilities(image).array
    assert set(maps) == {"liver", "tumor", "uncertainty"}
    for name, expected in (("liver", probabilities[1] + probabilities[2]), ("tumor", probabilities[2])):
        assert maps[name].shape == image.shape == labels.shape and maps[name].dtype == np.uint8
        np.testing.assert_allclose(maps[name] / 255.0, expected, atol=0.5 / 255 + 1e-5)
    assert maps["liver"].max() > 200 and maps["uncertainty"].max() > 0  # a liver found, somewhere unsure


def test_normalised_entropy_and_quantise_by_hand():
    p = torch.softmax(torch.randn(3, 50, generator=torch.Generator().manual_seed(0)), dim=0)
    np.testing.assert_allclose(normalised_entropy(p).numpy(), entropy(p.numpy(), axis=0) / np.log(3), rtol=1e-5)
    assert normalised_entropy(torch.tensor([[1.0], [0.0], [0.0]])).item() == 0.0
    assert normalised_entropy(torch.full((3, 1), 1 / 3)).item() == pytest.approx(1.0)
    np.testing.assert_array_equal(quantise(np.array([0.0, 0.5 / 255 + 1e-6, 0.5, 1.0, 1.2])), [0, 1, 128, 255, 255])
    assert np.float32(255) * np.float32(PROBABILITY_SCALE) <= 1.0 < 255 * (PROBABILITY_SCALE + 1e-9)
