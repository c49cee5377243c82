"""What a run writes besides checkpoints: ``metrics.csv``, ``curves.png`` and optional TensorBoard events.

All files are rewritten atomically from the full history, so a run killed at any moment leaves a
complete file behind.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from pathlib import Path
from typing import Any

from medseg.utils.atomic import atomic_path, atomic_write_text

__all__ = ["TensorBoard", "plot_curves", "write_metrics_csv"]

logger = logging.getLogger(__name__)


def write_metrics_csv(path: str | os.PathLike, history: list[dict[str, Any]]) -> Path:
    """One row per epoch; columns are the union of keys in first-seen order, blanks where absent."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return atomic_write_text(path, buffer.getvalue())


def plot_curves(path: str | os.PathLike, history: list[dict[str, Any]], *, title: str = "") -> Path:
    """PNG with the training loss (left) and validation Dice per region (right) against epoch."""
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [r["epoch"] for r in history]
    ax_loss.plot(epochs, [r["train_loss"] for r in history], color="tab:blue")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    dice_keys = [k for k in (history[-1] if history else {}) if k.startswith("val_dice_")]
    for key in dice_keys:
        points = [(r["epoch"], r[key]) for r in history if _is_number(r.get(key))]
        if points:
            ax_dice.plot(*zip(*points), marker="o", label=key.removeprefix("val_dice_"))
    ax_dice.set(xlabel="epoch", ylabel="Dice", title="validation Dice", ylim=(0, 1))
    if dice_keys:
        ax_dice.legend(loc="lower right")
    for ax in (ax_loss, ax_dice):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


class TensorBoard:
    """Scalars to TensorBoard when the ``tensorboard`` package is installed; otherwise does nothing."""

    def __init__(self, log_dir: str | os.PathLike, *, enabled: bool = True):
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            logger.debug("tensorboard is not installed; no event files")
            return
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, row: dict[str, Any], step: int) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and _is_number(value):
                self.writer.add_scalar(key.replace("val_", "val/").replace("train_", "train/"), value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
