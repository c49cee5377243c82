"""Fold ensembles: probabilities equal the mean of the single folds' (computed here one fold at a time),
every window runs through every fold once, TTA composes, mismatched runs are refused, fold agreement."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from medseg.data import make_phantom
from medseg.errors import DataError
from medseg.inference import InferenceSettings, Predictor
from medseg.inference.ensemble import FoldEnsemble, find_fold_runs, fold_agreement, mean_probabilities

from .conftest import tiny_plan, write_run


@pytest.mark.parametrize("tta", [False, True])
def test_ensemble_probabilities_are_the_mean_of_the_folds(two_fold_runs, tta):
    image = make_phantom(size="tiny", seed=3, index=1).image  # stored LPS
    settings = InferenceSettings(mode="full", tta=tta)
    singles = [Predictor.from_run(two_fold_runs / f"fold{k}", device="cpu", settings=settings) for k in (0, 1)]
    expected = np.mean([p.predict_probabilities(image).array for p in singles], axis=0)
    ensemble = Predictor.from_run(two_fold_runs, device="cpu", settings=settings)
    assert ensemble.members == 2 and len(ensemble.sources) == 2
    got = ensemble.predict_probabilities(image)
    assert got.shape == expected.shape and np.array_equal(got.affine, image.affine)
    np.testing.assert_allclose(got.array, expected, atol=2e-6)
    assert np.abs(singles[0].predict_probabilities(image).array - expected).max() > 0.05  # the folds differ


def test_each_window_is_loaded_once_and_seen_by_every_fold(two_fold_runs):
    image = make_phantom(size="tiny", seed=3, index=0).image
    settings = InferenceSettings(mode="full", batch_size=1)
    ensemble = Predictor.from_runs([two_fold_runs / "fold0", two_fold_runs / "fold1"], device="cpu", settings=settings)
    single = Predictor.from_run(two_fold_runs / "fold0", device="cpu", settings=settings)
    calls = {"ensemble": 0, "fold0": 0, "fold1": 0, "single": 0}
    for name, net in (("ensemble", ensemble.network), ("fold0", ensemble.network.folds[0]),
                      ("fold1", ensemble.network.folds[1]), ("single", single.network)):  # fmt: skip
        net.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    ensemble.predict(image)
    single.predict(image)
    assert calls["ensemble"] == calls["fold0"] == calls["fold1"] == calls["single"] > 0


def test_coarse_to_fine_ensemble_labels_match_full_inside_the_liver(two_fold_runs):
    case = make_phantom(size="tiny", seed=3, index=2)
    ensemble = Predictor.from_run(two_fold_runs, device="cpu", settings=InferenceSettings(fine_windows="reach"))
    c2f, stats = ensemble.predict(case.image)
    full, _ = ensemble.with_settings(mode="full").predict(case.image)
    assert stats["coarse_box"] is not None and stats["uncertainty"]["folds"] == 2
    np.testing.assert_array_equal(c2f.array, full.array)


def test_folds_subset_and_missing_fold(two_fold_runs):
    single = Predictor.from_run(two_fold_runs, device="cpu", folds=[1])
    assert single.members == 1 and single.sources[0].endswith("best.pt")
    assert [p.name for p in find_fold_runs(two_fold_runs)] == ["fold0", "fold1"]
    with pytest.raises(DataError, match="fold 4"):
        Predictor.from_run(two_fold_runs, device="cpu", folds=[0, 4])


def test_runs_with_another_patch_size_or_plan_are_refused(two_fold_runs, tmp_path):
    from medseg.models import build_model
    from medseg.preprocessing import PreprocessingPlan

    from .conftest import MODEL_CONFIG

    other = write_run(tmp_path / "other", build_model(MODEL_CONFIG), plan=tiny_plan(), patch_size=(24, 24, 24))
    with pytest.raises(DataError, match="patch size") as info:
        Predictor.from_runs([two_fold_runs / "fold0", other], device="cpu")
    assert "other" in str(info.value) and "\n" not in str(info.value)
    plan = PreprocessingPlan.window((10.0, 10.0, 10.0), (-150.0, 250.0))
    other = write_run(tmp_path / "plan", build_model(MODEL_CONFIG), plan=plan)
    with pytest.raises(DataError, match="preprocessing plan"):
        Predictor.from_runs([two_fold_runs / "fold0", other], device="cpu")


def test_mean_probabilities_and_fold_agreement_by_hand():
    stacked = torch.zeros(6, 2, 2, 1)
    stacked[2, 0, 0, 0] = 10.0  # fold 0: tumor at voxel (0, 0)
    stacked[4, :, 0, 0] = 10.0  # fold 1: liver at (0, 0) and (1, 0)
    probs = mean_probabilities(stacked, 2)
    e = math.exp(10.0)
    np.testing.assert_allclose(probs[:, 0, 0, 0], [(1 / (e + 2) + 1 / (e + 2)) / 2, 0.5 * (1 / (e + 2) + e / (e + 2)),
                                                    0.5 * (e / (e + 2) + 1 / (e + 2))], rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(probs[:, 1, 1, 0], [1 / 3, 1 / 3, 1 / 3], rtol=1e-6)
    agreement = fold_agreement(stacked, 2, spacing_mm=(10.0, 10.0, 10.0))  # 1 mL voxels
    assert agreement["fold_tumor_volume_ml"] == [1.0, 0.0] and agreement["fold_liver_volume_ml"] == [1.0, 2.0]
    assert agreement["tumor_volume_sd_ml"] == pytest.approx(np.std([1.0, 0.0], ddof=1))
    assert agreement["fold_dice_tumor"] == 0.0 and agreement["fold_dice_liver"] == pytest.approx(2 / 3)
    assert FoldEnsemble([torch.nn.Identity(), torch.nn.Identity()])(torch.ones(1, 3, 2)).shape == (1, 6, 2)


def test_postprocessing_chosen_on_crossval_is_used(two_fold_runs, tmp_path):
    import json

    root = tmp_path / "liver"
    shutil.copytree(two_fold_runs, root)
    chosen = {"keep_largest_liver": False, "tumor_inside_liver_dilation_mm": None, "min_lesion_volume_mm3": 65.0}
    (root / "postprocessing.json").write_text(json.dumps({"chosen": chosen}))
    from medseg.inference import PostprocessConfig

    assert Predictor.from_run(root, device="cpu").postprocessing == PostprocessConfig.from_dict(chosen)
    (root / "postprocessing.json").write_text(json.dumps({"chosen": {"min_lesion": 3}}))
    with pytest.raises(DataError, match=r"postprocessing\.json"):
        Predictor.from_run(root, device="cpu")
