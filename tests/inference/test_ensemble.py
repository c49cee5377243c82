"""Fold ensembles: probabilities equal the mean of the single folds' (computed here one fold at a time),
every fold runs every window once, TTA composes, mismatched runs are refused, fold agreement, memory."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from medseg.data import make_phantom
from medseg.errors import DataError
from medseg.inference import InferenceSettings, Predictor
from medseg.inference.ensemble import FoldEnsemble, FoldMean, find_fold_runs, fold_checkpoint

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


@pytest.mark.parametrize("mode", ["full", "coarse-to-fine"])
def test_each_fold_runs_the_windows_it_would_run_alone(two_fold_runs, mode, monkeypatch):
    import medseg.inference.predictor as predictor_module

    image = make_phantom(size="tiny", seed=3, index=0).image
    settings = InferenceSettings(mode=mode, batch_size=1, fine_windows="reach")
    ensemble = Predictor.from_runs([two_fold_runs / "fold0", two_fold_runs / "fold1"], device="cpu", settings=settings)
    single = Predictor.from_run(two_fold_runs / "fold0", device="cpu", settings=settings)
    calls = {"fold0": 0, "fold1": 0, "single": 0}
    for name, net in (("fold0", ensemble.network.folds[0]), ("fold1", ensemble.network.folds[1]),
                      ("single", single.network)):  # fmt: skip
        net.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    coarse = []  # (networks, windows each fold ran) of every coarse pass

    def counting_locate_box(networks, *args, **kwargs):
        before = dict(calls)
        out = predictor_module_locate_box(networks, *args, **kwargs)
        coarse.append((list(networks), {k: calls[k] - before[k] for k in ("fold0", "fold1")}))
        return out

    predictor_module_locate_box = predictor_module.locate_box
    monkeypatch.setattr(predictor_module, "locate_box", counting_locate_box)
    _, stats = ensemble.predict(image)
    single.predict(image)
    if mode == "full":  # the same windows as one fold alone
        assert calls["fold0"] == calls["fold1"] == calls["single"] > 0 and coarse == []
    else:  # one coarse pass (both folds on each coarse window), then each fold's own fine rounds
        assert len(coarse) == 2 and coarse[0][0] == list(ensemble.network.folds)  # the ensemble's, then single's
        assert coarse[0][1]["fold0"] == coarse[0][1]["fold1"] > 0
        assert calls["fold0"] > coarse[0][1]["fold0"] and calls["fold1"] > coarse[0][1]["fold1"]
        assert stats["coarse_box"] is not None
        assert len(stats["fold_rounds"]) == 2 and stats["rounds"] == sum(stats["fold_rounds"])
    with pytest.raises(TypeError, match="folds"):
        ensemble.network(torch.zeros(1, 1, 8, 8, 8))


def test_ensemble_holds_one_fold_at_a_time(two_fold_runs):
    """The ensemble's largest tensors: one fold's blend and the running sum, not one blend per fold."""
    image = make_phantom(size="tiny", seed=3, index=0).image
    settings = InferenceSettings(mode="full")
    sizes = {}
    for name, predictor in (("one", Predictor.from_run(two_fold_runs / "fold0", device="cpu", settings=settings)),
                            ("two", Predictor.from_run(two_fold_runs, device="cpu", settings=settings))):  # fmt: skip
        sizes[name] = _largest_live_tensors(lambda p=predictor: p.predict_logits(image))
    _, _, stats = Predictor.from_run(two_fold_runs, device="cpu", settings=settings).predict_logits(image)
    k_map = 3 * 4 * int(np.prod(stats["preprocessed_shape"]))  # K float32 maps on the model grid
    assert sizes["one"] >= 1.0 * k_map  # the blend itself
    assert sizes["two"] - sizes["one"] <= 1.05 * k_map  # + the running sum only (two blends: + 1.33 maps)


def _largest_live_tensors(run) -> int:
    """Peak bytes of the float32 tensors of 3 or more channels alive at once while ``run()`` runs (by the
    tensors' storage sizes, sampled at each allocation made through ``torch.zeros``/``softmax``)."""
    import gc
    import weakref

    live: list = []
    peak = [0]

    def track(t):
        if isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.ndim == 4 and t.shape[0] >= 3:
            live.append(weakref.ref(t))
            total = sum(r().untyped_storage().nbytes() for r in live if r() is not None)
            peak[0] = max(peak[0], total)
        return t

    originals = {name: getattr(torch, name) for name in ("zeros", "softmax")}
    try:
        for name, fn in originals.items():
            setattr(torch, name, lambda *a, _fn=fn, **k: track(_fn(*a, **k)))
        run()
    finally:
        for name, fn in originals.items():
            setattr(torch, name, fn)
        gc.collect()
    return peak[0]


def test_coarse_to_fine_ensemble_labels_match_full_inside_the_liver(two_fold_runs):
    case = make_phantom(size="tiny", seed=3, index=2)
    ensemble = Predictor.from_run(two_fold_runs, device="cpu", settings=InferenceSettings(fine_windows="reach"))
    c2f, stats = ensemble.predict(case.image)
    full, _ = ensemble.with_settings(mode="full").predict(case.image)
    assert stats["coarse_box"] is not None and stats["uncertainty"]["folds"] == 2
    np.testing.assert_array_equal(c2f.array, full.array)


def test_folds_subset_and_missing_fold(two_fold_runs):
    single = Predictor.from_run(two_fold_runs, device="cpu", folds=[1])
    assert single.members == 1 and single.sources[0].endswith("fold1/best.pt")  # no last.pt: best.pt
    assert [p.name for p in find_fold_runs(two_fold_runs)] == ["fold0", "fold1"]
    with pytest.raises(DataError, match="fold 4"):
        Predictor.from_run(two_fold_runs, device="cpu", folds=[0, 4])


def test_the_ensemble_uses_each_folds_final_checkpoint_as_crossval_does(two_fold_runs, tmp_path):
    """``last.pt`` over ``best.pt`` (issue #28): the ensemble is the model cross-validation measured."""
    import shutil

    root = tmp_path / "liver"
    shutil.copytree(two_fold_runs, root)
    shutil.copy(root / "fold0" / "best.pt", root / "fold1" / "last.pt")  # fold1's final differs from its best
    assert fold_checkpoint(root / "fold1") == root / "fold1" / "last.pt"
    assert fold_checkpoint(root / "fold0") == root / "fold0" / "best.pt"
    ensemble = Predictor.from_run(root, device="cpu")
    assert ensemble.sources == (str(root / "fold0" / "best.pt"), str(root / "fold1" / "last.pt"))
    first, second = (dict(f.named_parameters()) for f in ensemble.network.folds)
    assert all(torch.equal(first[k], second[k]) for k in first)  # fold1 = the copied final weights


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


def test_fold_mean_and_agreement_by_hand():
    fold0, fold1 = torch.zeros(3, 2, 2, 1), torch.zeros(3, 2, 2, 1)
    fold0[2, 0, 0, 0] = 10.0  # fold 0: tumor at voxel (0, 0)
    fold1[1, :, 0, 0] = 10.0  # fold 1: liver at (0, 0) and (1, 0)
    folds = FoldMean(spacing_mm=(10.0, 10.0, 10.0))  # 1 mL voxels
    folds.add(fold0.clone())
    folds.add(fold1.clone())
    probs = folds.log_mean_probabilities().exp()
    e = math.exp(10.0)
    np.testing.assert_allclose(probs[:, 0, 0, 0], [(1 / (e + 2) + 1 / (e + 2)) / 2, 0.5 * (1 / (e + 2) + e / (e + 2)),
                                                    0.5 * (e / (e + 2) + 1 / (e + 2))], rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(probs[:, 1, 1, 0], [1 / 3, 1 / 3, 1 / 3], rtol=1e-5)
    agreement = folds.agreement()
    assert agreement["fold_tumor_volume_ml"] == [1.0, 0.0] and agreement["fold_liver_volume_ml"] == [1.0, 2.0]
    assert agreement["tumor_volume_sd_ml"] == pytest.approx(np.std([1.0, 0.0], ddof=1))
    assert agreement["fold_dice_tumor"] == 0.0 and agreement["fold_dice_liver"] == pytest.approx(2 / 3)
    assert FoldEnsemble([torch.nn.Identity(), torch.nn.Identity()]).folds[1] is not None


def test_fold_agreement_of_packed_masks_matches_numpy():
    rng = np.random.default_rng(0)
    labels = [rng.integers(0, 3, size=(7, 5, 3)) for _ in range(3)]  # 105 voxels: not a multiple of 8
    folds = FoldMean(spacing_mm=(1.0, 2.0, 3.0))
    for lab in labels:
        folds.add(torch.nn.functional.one_hot(torch.from_numpy(lab), 3).permute(3, 0, 1, 2).float() * 5)
    agreement = folds.agreement()

    def dice(a, b):
        return 2 * np.sum(a & b) / (a.sum() + b.sum())

    tumors = [lab == 2 for lab in labels]
    livers = [lab > 0 for lab in labels]
    pairs = [(0, 1), (0, 2), (1, 2)]
    assert agreement["fold_dice_tumor"] == pytest.approx(np.mean([dice(tumors[i], tumors[j]) for i, j in pairs]))
    assert agreement["fold_dice_liver"] == pytest.approx(np.mean([dice(livers[i], livers[j]) for i, j in pairs]))
    assert agreement["fold_tumor_volume_ml"] == pytest.approx([t.sum() * 0.006 for t in tumors])


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


def test_fold_volumes_use_the_true_voxel_volume():
    """Issue #29.3: the folds' volumes on a sheared grid are voxels x |det| (here 0.5 mL, the spacings'
    product 1 mL: columns 10 mm long, the third at 60° to the second)."""
    affine = np.diag([10.0, 10.0, 10.0, 1.0])
    affine[1:3, 2] = 10.0 * np.sin(np.radians(60.0)), 10.0 * np.cos(np.radians(60.0))
    logits = torch.zeros(3, 2, 2, 1)
    logits[1, :, 0, 0], logits[2, 0, 1, 0] = 10.0, 10.0  # liver at 2 voxels, tumor at 1
    folds = FoldMean(spacing_mm=(10.0, 10.0, 10.0), affine=affine)
    folds.add(logits.clone())
    agreement = folds.agreement()
    assert agreement["fold_liver_volume_ml"] == [pytest.approx(1.5)] and agreement["fold_tumor_volume_ml"] == [
        pytest.approx(0.5)]
