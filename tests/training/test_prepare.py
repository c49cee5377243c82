"""Folds, schedules and validation Dice: checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseg.errors import DataError
from medseg.training.loader import load_pipeline
from medseg.training.optimization import build_optimizer, build_scheduler
from medseg.training.prepare import make_folds
from medseg.training.validate import region_dice


def test_folds_partition_cases_deterministically():
    ids = [str(i) for i in range(13)]
    folds = make_folds(ids, n_folds=5, seed=0)
    assert len(folds) == 5
    vals = [v for f in folds for v in f["val"]]
    assert sorted(vals) == sorted(ids)  # each case validated exactly once
    assert sorted(len(f["val"]) for f in folds) == [2, 2, 3, 3, 3]
    for f in folds:
        assert set(f["train"]) | set(f["val"]) == set(ids) and not set(f["train"]) & set(f["val"])
    assert make_folds(list(reversed(ids)), n_folds=5, seed=0) == folds  # order of discovery does not matter
    assert make_folds(ids, n_folds=5, seed=1) != folds
    with pytest.raises(DataError, match="3 labelled cases cannot make 5 folds"):
        make_folds(ids[:3], n_folds=5)


def test_poly_schedule_matches_formula():
    config = load_pipeline("liver", device="cpu", overrides=["training.epochs=2", "training.iterations_per_epoch=5",
                                                             "optimizer.name=sgd", "optimizer.lr=0.01"])
    opt = build_optimizer(config, [torch.nn.Parameter(torch.zeros(1))])
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.99
    sched = build_scheduler(config, opt)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.01 * (1 - t / 10) ** 0.9 for t in range(10)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    cosine = load_pipeline("liver", device="cpu", overrides=[
        "training.epochs=1", "training.iterations_per_epoch=4", "schedule.name=cosine", "optimizer.name=adamw",
        "optimizer.lr=0.01"])
    opt = build_optimizer(cosine, [torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(opt, torch.optim.AdamW)
    sched = build_scheduler(cosine, opt)
    for _ in range(2):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi / 2)))


def test_region_dice_hand_computed():
    ref = np.zeros((4, 4, 2), np.uint8)
    pred = np.zeros_like(ref)
    ref[:2, :2] = 1  # 8 liver voxels
    ref[0, 0, 0] = 2  # 1 tumor voxel (part of the liver region)
    pred[:2, :1] = 1  # 4 voxels, all inside the reference liver
    pred[0, 0, 0] = 2
    pred[3, 3, 1] = 2  # a false-positive tumor voxel outside the liver
    d = region_dice(pred, ref)
    assert d["liver"] == pytest.approx(2 * 4 / (5 + 8))  # pred liver region: 4 + 1 outside voxel
    assert d["tumor"] == pytest.approx(2 * 1 / (2 + 1))
    empty = np.zeros_like(ref)
    assert region_dice(empty, empty)["tumor"] == 1.0  # absent in both: 1 (LiTS per-case convention)
    assert region_dice(pred, empty)["tumor"] == 0.0


def test_two_plans_on_one_data_set_never_share_cache_files(tiny_dataset, tmp_path):
    """Issue #29.4: a second training with another normalisation overwrote the first one's cached arrays
    (one ``<case>.image.npy`` per data set); now each plan has its own folder and the first is untouched."""
    import hashlib

    from medseg.training.prepare import prepare_data

    def run(normalization):
        config = load_pipeline("liver", device="cpu", overrides=[
            f"preprocessing.normalization={normalization}", f"data.cache_dir={tmp_path / 'cache'}", "data.folds=2"])
        return prepare_data(config, data=tiny_dataset, fold=0, workers=1)

    def digests(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.npy"))}

    first = run("ct_zscore")
    before = digests(first.cache_dir)
    second = run("window")
    assert first.cache_dir != second.cache_dir and first.cache_dir.parent == second.cache_dir.parent
    assert digests(first.cache_dir) == before and before  # the first run's arrays are as they were
    assert set(digests(second.cache_dir)) == set(before) and digests(second.cache_dir) != before
    assert run("ct_zscore").cache_dir == first.cache_dir  # the same plan shares its cache


@pytest.mark.parametrize("inside", ["", "sub/cache"])
def test_cache_dir_in_the_data_set_folder_is_refused(tiny_dataset, inside):
    """Issue #29.5: data.cache_dir=<the data set> replaced its dataset.json with the cache index."""
    from medseg.errors import ConfigError
    from medseg.training.prepare import cache_dir_for

    config = load_pipeline("liver", device="cpu", overrides=[f"data.cache_dir={tiny_dataset / inside}"])
    with pytest.raises(ConfigError, match=r"data\.cache_dir .* the data set folder .*never written among the input"):
        cache_dir_for(config, tiny_dataset)
