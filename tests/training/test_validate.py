"""Validation Dice, raw and after the run's post-processing, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.inference.postprocess import PostprocessConfig
from medseg.inference.sliding_window import WindowSettings
from medseg.io import Volume, affine_from_geometry
from medseg.preprocessing import PreprocessingPlan, preprocess_dataset
from medseg.training.validate import validate_cases


class _RoundToClass(torch.nn.Module):
    """Logits ``-(x - c)^2`` per class c: the argmax is the input value rounded to 0, 1 or 2."""

    def forward(self, x):
        return torch.cat([-((x - c) ** 2) for c in range(3)], dim=1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Reference: a 10x10x6 liver holding a 2x2x2 tumor. "Prediction" (the image, value = class): the
    same plus a 1-voxel liver speck and a 1-voxel tumor speck, both far from the liver."""
    ref = np.zeros((32, 32, 16), np.uint8)
    ref[4:14, 4:14, 4:10] = 1
    ref[6:8, 6:8, 6:8] = 2
    pred = ref.copy()
    pred[25, 25, 12] = 1
    pred[25, 5, 2] = 2
    affine = affine_from_geometry((1.0, 1.0, 2.0))
    plan = PreprocessingPlan((1.0, 1.0, 2.0), "ct_zscore", clip_hu=(-1000.0, 1000.0), mean=0.0, std=100.0)
    case = ("c", Volume((pred * 100).astype(np.int16), affine), Volume(ref, affine))
    return preprocess_dataset([case], tmp_path_factory.mktemp("val"), plan, workers=1, progress=False)


def test_raw_and_postprocessed_dice(cache):
    result = validate_cases(_RoundToClass(), cache, ["c"], WindowSettings(patch_size=(16, 16, 8), num_classes=3),
                            postprocess=PostprocessConfig(), spacing_mm=(1.0, 1.0, 2.0))  # fmt: skip
    liver, tumor = 600, 8  # reference voxels (liver region includes the tumor)
    assert result["liver"] == pytest.approx(2 * liver / (2 * liver + 2), abs=1e-6)  # both specks count as liver
    assert result["tumor"] == pytest.approx(2 * tumor / (2 * tumor + 1), abs=1e-6)
    assert result["liver_post"] == pytest.approx(1.0) and result["tumor_post"] == pytest.approx(1.0)
    assert result["mean_foreground_dice"] == pytest.approx((result["liver"] + result["tumor"]) / 2)


def test_no_postprocess_reports_raw_only(cache):
    result = validate_cases(_RoundToClass(), cache, ["c"], WindowSettings(patch_size=(16, 16, 8), num_classes=3))
    assert set(result) == {"liver", "tumor", "mean_foreground_dice"}
