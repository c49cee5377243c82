"""The run folder is checked before a resume uses it: config.yaml, folds.json, plan.json, data.json and
last.pt fields each fail in one line naming the file; flags that contradict the folder are refused before
anything is written, and a bad `--resume --set` leaves config.yaml as it was."""

from __future__ import annotations

import json

import pytest
import torch

from medseg.cli import main
from medseg.training.loader import load_pipeline

TINY = ["data.folds=2", "training.epochs=2", "model.depth=3", "model.base_filters=8", "model.strides=null",
        "training.patch_size=[32,32,16]"]  # fmt: skip


@pytest.fixture
def run(tmp_path, tiny_dataset):
    """A hand-made run folder of fold 0 (what `medseg train` writes before the first epoch)."""
    folder = tmp_path / "run"
    folder.mkdir()
    config = load_pipeline("liver", device="cpu", overrides=[*TINY, f"data.cache_dir={tmp_path / 'cache'}"])
    (folder / "config.yaml").write_text(config.to_yaml())
    folds = [{"train": ["0", "1"], "val": ["2", "3"]}, {"train": ["2", "3"], "val": ["0", "1"]}]
    (folder / "folds.json").write_text(json.dumps({"fold": 0, "seed": 0, "folds": folds}))
    (folder / "data.json").write_text(json.dumps({"root": str(tiny_dataset), "cache_dir": str(tmp_path / "cache")}))
    return folder


def _resume(capsys, folder, *extra):
    code = main(["train", "liver", "--out", str(folder), "--resume", "--no-progress", *extra])
    return code, capsys.readouterr().err.strip().splitlines()


def _one_line(code, err, *parts):
    assert code == 2 and len(err) == 1 and err[0].startswith("medseg train: error: "), err
    for part in parts:
        assert part in err[0], err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"training: [unclosed\n", "invalid YAML"),
        (b"- a\n- list\n", "expected a mapping of pipeline sections, got list"),
        (b"name: liver\x00\xff\xfe\n", "not UTF-8"),
        (b"a: &a [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n".encode() for i in range(6)),
         "alias bomb"),
        (b"training: {epochs: -4}\n", "training.epochs must be >= 1"),
    ],
)
def test_bad_config_yaml_is_one_line_naming_it(run, capsys, content, message):
    (run / "config.yaml").write_bytes(content)
    code, err = _resume(capsys, run)
    _one_line(code, err, str(run / "config.yaml"), message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"fold": 0, "folds": [', "invalid JSON"),
        ('[1, 2]', "with 2 folds"),
        ('{"fold": 5, "folds": [{"train": [], "val": []}, {"train": [], "val": []}]}', "'fold' must be an integer"),
        ('{"fold": 0, "folds": [{"train": "0", "val": []}, {"train": [], "val": []}]}', "folds[0] must be"),
    ],
)
def test_bad_folds_json_is_one_line_naming_it(run, capsys, content, message):
    (run / "folds.json").write_text(content)
    code, err = _resume(capsys, run)
    _one_line(code, err, str(run / "folds.json"), message)


def test_contradicting_flags_are_refused_before_anything_is_written(run, capsys, tmp_path):
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    code, err = _resume(capsys, run, "--fold", "1")
    _one_line(code, err, "--fold 1 contradicts the run's fold 0 (folds.json)")
    code, err = _resume(capsys, run, "--data", str(tmp_path))
    _one_line(code, err, "contradicts the run's data set")
    code, err = _resume(capsys, run, "--set", "model.base_filters=16")
    _one_line(code, err, "--resume cannot change model")
    code, err = main(["train", "liver-2d", "--out", str(run), "--resume"]), capsys.readouterr().err.splitlines()
    _one_line(code, err, "trains pipeline 'liver', not 'liver-2d'")
    code, err = _resume(capsys, run, "--set", "optimizer.lr=.inf")  # a bad --set
    _one_line(code, err, "optimizer.lr: expected a finite number")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # config.yaml and the rest untouched


def _checkpoint(**fields):
    state = {"format_version": 1, "model": {}, "epoch": 1, "history": [{"epoch": 1}], "best_metric": 0.5,
             "optimizer": {}, "scheduler": {}, "scaler": {}, "rng": {},
             "model_config": {"name": "unet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3},
             "plan": {"target_spacing_mm": [1.0, 1.0, 1.0], "normalization": "ct_zscore"},
             "inference": {"patch_size": [32, 32, 16], "spatial_dims": 3, "num_classes": 3}}  # fmt: skip
    for key, value in fields.items():
        section, _, sub = key.partition("__")
        if sub:
            state[section] = {**state[section], sub: value}
        else:
            state[section] = value
    return state


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"format_version": "abc"}, "'format_version' must be a positive integer, got 'abc'"),
        ({"model_config__name": ["unet"]}, "model_config.name must be a model name"),
        ({"inference__patch_size": "32x32x16"}, "inference.patch_size must be a list of integers"),
        ({"plan__spacing": 3}, "unknown plan keys"),
        ({"epoch": "one"}, "'epoch' must be an integer in 0..2"),
        ({"epoch": 2, "history": [{"epoch": 1}]}, "'history' must be 2 metrics rows"),
        ({"optimizer": None}, "'optimizer' is missing or not a mapping"),
    ],
)
def test_crafted_last_pt_fields_are_one_line_naming_it(run, capsys, fields, message):
    torch.save(_checkpoint(**fields), run / "last.pt")
    code, err = _resume(capsys, run)
    _one_line(code, err, str(run / "last.pt"), message)


def test_resume_takes_the_fold_and_data_set_from_the_run_folder(run, tiny_dataset):
    from medseg.training.run_files import check_resume, load_run_config

    record = json.loads((run / "folds.json").read_text())
    (run / "folds.json").write_text(json.dumps({**record, "fold": 1}))  # a fold-1 run
    config = load_run_config(run, ["training.epochs=5"])  # more epochs: allowed
    assert config.training.epochs == 5
    assert check_resume(run, config, fold=None, data=None) == (1, tiny_dataset)  # not fold 0
    assert check_resume(run, config, fold=1, data=tiny_dataset) == (1, tiny_dataset)


def test_resume_with_a_config_that_does_not_name_the_data_set_and_a_frozen_init(run, tiny_dataset):
    """The run's config.yaml records its data set; a config that leaves ``data.root`` unset (the API with the
    pipeline as loaded) resumes it, another data set or another pretrained model does not."""
    from dataclasses import replace

    from medseg.errors import ConfigError
    from medseg.training.run_files import check_resume, load_run_config

    saved = load_run_config(run)
    unnamed = replace(saved, data=replace(saved.data, root=None))
    assert check_resume(run, unnamed, fold=None, data=None)[1] == tiny_dataset
    with pytest.raises(ConfigError, match="cannot change data"):
        check_resume(run, replace(saved, data=replace(saved.data, root="/elsewhere")), fold=None, data=None)
    with pytest.raises(ConfigError, match=r"cannot change training\.init_from"):
        check_resume(run, load_run_config(run, ["training.init_from=/some/other/model"]), fold=None, data=None)
