"""metrics.csv, curves.png and TensorBoard events of a run."""

from __future__ import annotations

import csv
import math

import pytest

from medseg.training.records import TensorBoard, plot_curves, write_metrics_csv

HISTORY = [
    {"epoch": 1, "train_loss": 1.5, "lr": 0.01},
    {"epoch": 2, "train_loss": 1.0, "lr": 0.005, "val_dice_liver": 0.8, "val_metric": 0.8},
    {"epoch": 3, "train_loss": 0.5, "lr": 0.0, "val_dice_liver": math.nan},
]


def test_metrics_csv_has_the_union_of_columns_in_first_seen_order(tmp_path):
    path = write_metrics_csv(tmp_path / "metrics.csv", HISTORY)
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,train_loss,lr,val_dice_liver,val_metric"
    assert lines[1] == "1,1.5,0.01,,"  # blanks where a row lacks a column
    rows = list(csv.DictReader(path.open()))
    assert [r["val_metric"] for r in rows] == ["", "0.8", ""] and rows[2]["val_dice_liver"] == "nan"
    write_metrics_csv(path, HISTORY[:1])  # rewritten whole from the history
    assert path.read_text() == "epoch,train_loss,lr\n1,1.5,0.01\n"


def test_curves_png(tmp_path):
    path = plot_curves(tmp_path / "curves.png", HISTORY, title="liver fold 0")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name != "curves.png"]  # no temporary left


def test_tensorboard_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = TensorBoard(tmp_path / "tb")
    for row in HISTORY:
        tb.log(row, row["epoch"])
    tb.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "lr", "val/dice_liver", "val/metric"} <= tags and "epoch" not in tags
    assert [e.value for e in events.Scalars("val/dice_liver")] == [pytest.approx(0.8)]  # NaN not logged


def test_tensorboard_disabled_writes_nothing(tmp_path):
    tb = TensorBoard(tmp_path / "tb", enabled=False)
    tb.log({"train_loss": 1.0}, 1)
    tb.close()
    assert not (tmp_path / "tb").exists()
