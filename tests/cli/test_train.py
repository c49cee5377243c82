"""``medseg train --fold all`` / ``--fold 0,2``: every fold in turn into ``<out>/fold<K>``, each resumable."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from medseg.cli import main

from ..conftest import FOLD_TINY


def _rows(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_fold_all_trains_every_fold_into_its_folder(fold_runs, tiny_dataset):
    runs = sorted(p.name for p in fold_runs.iterdir() if p.is_dir())
    assert runs == ["fold0", "fold1"]
    val = []
    for k in (0, 1):
        record = json.loads((fold_runs / f"fold{k}" / "folds.json").read_text())
        assert record["fold"] == k and (fold_runs / f"fold{k}" / "last.pt").is_file()
        assert len(_rows(fold_runs / f"fold{k}")) == 1
        val += record["folds"][k]["val"]
    cases = sorted(p.name.split(".")[0].removeprefix("volume-") for p in tiny_dataset.glob("volume-*"))
    assert sorted(val) == cases  # the validation folds partition the data set


@pytest.mark.slow
def test_fold_list_and_resume_each_fold(fold_runs, tiny_dataset, tmp_path):
    root = tmp_path / "liver"
    shutil.copytree(fold_runs / "fold1", root / "fold1")  # fold 1 done, fold 0 never started
    cache = json.loads((fold_runs / "fold1" / "data.json").read_text())["cache_dir"]
    sets = [a for s in [*FOLD_TINY, "data.folds=2", f"data.cache_dir={cache}"] for a in ("--set", s)]
    code = main(["train", "liver", "--data", str(tiny_dataset), "--fold", "1,0", "--out", str(root),
                 "--device", "cpu", "--epochs", "2", "--no-progress", "--resume", *sets])  # fmt: skip
    assert code == 0
    assert [r["epoch"] for r in _rows(root / "fold1")] == ["1", "2"]  # resumed: epoch 1 kept, epoch 2 added
    assert [r["epoch"] for r in _rows(root / "fold0")] == ["1", "2"]  # started
    assert _rows(root / "fold1")[0] == _rows(fold_runs / "fold1")[0]


def test_fold_out_of_range_and_bad_list(tiny_dataset, tmp_path, capsys):
    assert main(["train", "liver", "--data", str(tiny_dataset), "--fold", "0,2", "--out", str(tmp_path / "r"),
                 "--set", "data.folds=2", "--epochs", "1"]) == 2  # fmt: skip
    assert "--fold 2" in capsys.readouterr().err and not (tmp_path / "r").exists()
    with pytest.raises(SystemExit):
        main(["train", "liver", "--fold", "0,0"])


def test_train_with_the_users_splits_and_patient_grouping(tiny_dataset, tmp_path, capsys):
    """``--splits`` folds are used as given; ``--group-by patient`` keeps a patient's cases in one fold."""
    split = [{"train": ["0", "3"], "val": ["1", "2"]}, {"train": ["1", "2"], "val": ["0", "3"]}]
    (tmp_path / "splits.json").write_text(json.dumps(split))
    sets = [a for s in [*FOLD_TINY, f"data.cache_dir={tmp_path / 'cache'}"] for a in ("--set", s)]
    common = ["train", "liver", "--data", str(tiny_dataset), "--fold", "0", "--device", "cpu", "--epochs", "1",
              "--no-progress", *sets]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "given"), "--splits", str(tmp_path / "splits.json")]) == 0
    saved = json.loads((tmp_path / "given" / "folds.json").read_text())
    assert saved["folds"] == split
    (tmp_path / "patients.csv").write_text("case,patient\n0,P1\n1,P2\n2,P1\n3,P2\n")
    assert main([*common, "--out", str(tmp_path / "grouped"), "--group-by", "patient", "--patients",
                 str(tmp_path / "patients.csv")]) == 0  # fmt: skip
    grouped = json.loads((tmp_path / "grouped" / "folds.json").read_text())["folds"]
    assert sorted(sorted(f["val"]) for f in grouped) == [["0", "2"], ["1", "3"]]  # P1 = {0, 2}, P2 = {1, 3}
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "bad"), "--splits", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
