"""The training loop on tiny phantoms: loss falls (3D and 2.5D), resume equals an uninterrupted run,
bad settings and bad data stop before training, the run folder holds what inference needs."""

from __future__ import annotations

import csv
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from medseg.cli import main
from medseg.errors import ConfigError, DataError
from medseg.models import build_model
from medseg.runs.checkpoint import load_checkpoint
from medseg.training.loader import load_pipeline
from medseg.training.loop import train

TINY = ["data.folds=2", "training.iterations_per_epoch=4", "training.batch_size=2", "training.workers=0",
        "model.depth=3", "model.base_filters=8", "validation.max_cases=1", "validation.every_n_epochs=2",
        "training.deterministic=true"]  # fmt: skip
TINY_3D = [*TINY, "training.patch_size=[32,32,16]", "model.strides=null"]
TINY_2D = [*TINY, "training.patch_size=[48,48]", "training.batch_size=4", "training.context_slices=1"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("preprocessed")


def _config(name, cache, *extra):
    base = TINY_2D if name == "liver-2d" else TINY_3D
    return load_pipeline(name, device="cpu", overrides=[*base, f"data.cache_dir={cache}", *extra])


def _rows(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_cli_3d_run_loss_falls_and_run_folder_is_complete(tiny_dataset, cache, tmp_path):
    run = tmp_path / "run3d"
    sets = [a for s in [*TINY_3D, f"data.cache_dir={cache}"] for a in ("--set", s)]
    code = main(["train", "liver", "--data", str(tiny_dataset), "--out", str(run), "--device", "cpu",
                 "--epochs", "5", "--no-progress", *sets])  # fmt: skip
    assert code == 0
    for name in ("config.yaml", "plan.json", "folds.json", "last.pt", "best.pt", "metrics.csv", "curves.png"):
        assert (run / name).is_file(), name
    rows = _rows(run)
    losses = [float(r["train_loss"]) for r in rows]
    assert len(rows) == 5 and losses[-1] < 0.8 * losses[0], losses
    assert rows[1]["val_dice_liver"] and not rows[0]["val_dice_liver"]  # validated every 2nd and the last epoch
    assert 0.0 <= float(rows[1]["val_dice_liver_post"]) <= 1.0 and rows[1]["val_dice_tumor_post"]  # post-processed
    state = torch.load(run / "last.pt", weights_only=True)  # plain types and tensors only
    assert state["epoch"] == 5 and state["inference"]["patch_size"] == [32, 32, 16]
    assert state["inference"]["labels"] == {"0": "background", "1": "liver", "2": "tumor"}
    assert state["inference"]["mirror_axes"] == [1, 2]  # the pipeline's flip_axes: what TTA may mirror
    best = load_checkpoint(run / "best.pt")
    validated = [float(r["val_metric"]) for r in rows if r["val_metric"]]
    assert best["best_metric"] == pytest.approx(max(validated))
    model = build_model(best["model_config"]).eval()
    model.load_state_dict(best["model"])
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 20, 20, 9)).shape == (1, 3, 20, 20, 9)


def test_2d_run_loss_falls(tiny_dataset, cache, tmp_path):
    config = _config("liver-2d", cache, "training.epochs=6", "validation.every_n_epochs=6")
    result = train(config, run_dir=tmp_path / "run2d", data=tiny_dataset, progress=False)
    losses = [float(r["train_loss"]) for r in _rows(tmp_path / "run2d")]
    assert losses[-1] < 0.8 * losses[0], losses
    assert 0.0 <= result["val_dice_liver"] <= 1.0
    state = load_checkpoint(tmp_path / "run2d" / "last.pt")
    assert state["model_config"]["in_channels"] == 3
    assert state["inference"]["mirror_axes"] == [1]  # flip_axes [1, 2] on axial slices: only anterior-posterior


def test_resume_after_interruption_gives_identical_weights(tiny_dataset, cache, tmp_path):
    config = _config("liver", cache, "training.epochs=3", "training.iterations_per_epoch=3")
    train(config, run_dir=tmp_path / "full", data=tiny_dataset, progress=False)

    def stop_after_second(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, run_dir=tmp_path / "cut", data=tiny_dataset, progress=False, on_epoch_end=stop_after_second)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 2
    with pytest.raises(ConfigError, match="already holds a run"):
        train(config, run_dir=tmp_path / "cut", data=tiny_dataset, progress=False)
    train(config, run_dir=tmp_path / "cut", resume=True, progress=False)  # data set read from data.json
    full, resumed = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert resumed["epoch"] == 3
    for key, value in full["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=0, atol=0, msg=key)
    assert [r["train_loss"] for r in resumed["history"]] == [r["train_loss"] for r in full["history"]]


def test_bad_data_set_stops_before_training(tiny_dataset, cache, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dataset, broken)
    label = nib.load(broken / "segmentation-1.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 5), np.uint8), label.affine), broken / "segmentation-1.nii.gz")
    with pytest.raises(DataError, match="fails `medseg check`"):
        train(_config("liver", cache, "training.epochs=1"), run_dir=tmp_path / "run", data=broken, progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()
    with pytest.raises(DataError, match="data set folder not found"):
        train(_config("liver", cache), run_dir=tmp_path / "run", data=tmp_path / "nowhere", progress=False)
    with pytest.raises(ConfigError, match=r"--fold must be in 0\.\.1"):
        train(_config("liver", cache), run_dir=tmp_path / "run", data=tiny_dataset, fold=2, progress=False)
    with pytest.raises(ConfigError, match=r"model\.depth"):
        train(_config("liver", cache, "model.depth=2"), run_dir=tmp_path / "run", data=tiny_dataset, progress=False)


def test_cli_reports_bad_config_in_one_line(capsys, tmp_path):
    assert main(["train", "liver", "--out", str(tmp_path / "r"), "--set", "training.epochs=zero"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["medseg train: error: training.epochs: expected an integer, got 'zero'"]
    assert main(["train", "liver", "--out", str(tmp_path / "r"), "--resume"]) == 2
    assert "not a medseg run folder" in capsys.readouterr().err


def test_mirror_axes_follow_the_augmentation_settings():
    def axes(name, *overrides):
        config = load_pipeline(name, device="cpu", overrides=list(overrides))
        return config.augmentation.mirror_axes(config.spatial_dims)

    assert axes("liver") == [1, 2]
    assert axes("liver", "augmentation.flip_axes=null") == [0, 1, 2]  # nnU-Net: every axis
    assert axes("liver-2d", "augmentation.flip_axes=null") == [0, 1]
    assert axes("liver", "augmentation.enabled=false") == []
    assert axes("liver-2d", "augmentation.flip_prob=0") == []
