"""The demo's own logic (the full run is ``make demo``): stopping on a failed command, the summary table."""

from __future__ import annotations

import json
import subprocess

import pytest

from medseg import demo


def test_a_failed_command_stops_the_demo(monkeypatch, tmp_path):
    calls = []

    def fake_run(cmd, check):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1)

    monkeypatch.setattr(demo.subprocess, "run", fake_run)
    with pytest.raises(SystemExit, match=r"demo: `medseg phantom` failed with exit code 1"):
        demo.run_demo(tmp_path / "out")
    assert len(calls) == 1 and calls[0][-8:-6] == ["phantom", str(tmp_path / "out" / "data")]


def test_no_checkpoint_after_training_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(demo.subprocess, "run", lambda cmd, check: subprocess.CompletedProcess(cmd, 0))
    with pytest.raises(SystemExit, match=r"^demo: .*run: no checkpoint was written below this folder$"):
        demo.run_demo(tmp_path / "out")


def test_summary_table_against_the_phantom_truth(tmp_path, capsys):
    evaluation, pred, run_dir = tmp_path / "evaluation", tmp_path / "pred", tmp_path / "run"
    for folder in (evaluation, pred, run_dir):
        folder.mkdir()
    (evaluation / "per_case.csv").write_text("case,liver_dice,liver_hd95_mm,tumor_dice\n007,0.95,3.5,0.5\n")
    (pred / "007_volumes.json").write_text(json.dumps({"liver_ml": 1510.0, "tumor_ml": 11.0,
                                                       "lesions": [{}, {}]}))
    manifest = {"cases": [{"case_id": "007", "liver_ml": 1500.0, "tumor_ml": 12.0, "lesion_count": 3}]}
    summary = demo._summarise(tmp_path, evaluation, pred, manifest, run_dir, [], 90.0)
    assert summary["cases"] == [{"case": "007", "liver_dice": 0.95, "liver_hd95_mm": 3.5, "tumor_dice": 0.5,
                                 "liver_ml_pred": 1510.0, "liver_ml_true": 1500.0, "tumor_ml_pred": 11.0,
                                 "tumor_ml_true": 12.0, "lesions_pred": 2, "lesions_true": 3}]
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    out = capsys.readouterr().out
    assert "mean liver Dice 0.950, mean tumor Dice 0.500" in out and "total time: 1.5 min" in out
