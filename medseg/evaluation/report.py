"""Write an evaluation to disk: ``per_case.csv``, ``lesions.csv``, ``summary.json`` and figures.

Every file is written atomically (temporary file + rename, :mod:`medseg.utils.atomic`), and
``summary.json`` last: it says ``"status": "incomplete"`` from the start of a run
(:func:`mark_incomplete`) until every other file is written, then ``"complete"`` with the list of files,
so an interrupted evaluation is recognisable. Figures use whatever matplotlib backend is
active (the CLI chooses ``Agg``; a notebook keeps its own):

* ``boxplots.png``: Dice and HD95 per region (one box per region, cases as dots);
* ``volumes.png``: predicted vs reference volume (scatter with identity line) and Bland-Altman plot
  (difference vs mean, with the mean difference and 95% limits of agreement, Bland & Altman, Lancet 1986)
  for the liver and the tumor;
* ``froc.png``: lesion FROC curve, sensitivity against false positives per scan, with AP and CPM
  (:func:`medseg.evaluation.detection.plot_froc`; when any lesion was predicted).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from medseg.errors import DataError
from medseg.evaluation.result import REGIONS
from medseg.utils.atomic import atomic_path, atomic_write_csv, atomic_write_json

__all__ = ["REPORT_FILES", "draw_bland_altman", "earlier_report_files", "mark_incomplete", "plot_boxplots",
           "plot_volume_agreement", "write_report"]

#: Every file an evaluation may write, ``summary.json`` last.
REPORT_FILES = ("per_case.csv", "lesions.csv", "boxplots.png", "volumes.png", "froc.png", "summary.json")

logger = logging.getLogger(__name__)


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    return atomic_write_csv(path, frame)


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    return path


def plot_boxplots(per_case: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Box plots of Dice and HD95 (mm) per region, NaN cases left out (their count in the title)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for ax, metric, label in zip(axes, ("dice", "hd95_mm"), ("Dice", "HD95 (mm)")):
        data, names, skipped = [], [], 0
        for region in REGIONS:
            values = pd.to_numeric(per_case.get(f"{region}_{metric}"), errors="coerce").astype(float)
            finite = values[np.isfinite(values)].to_numpy()
            skipped += int(values.size - finite.size)
            data.append(finite)
            names.append(region)
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(names) + 1), names)
        for i, values in enumerate(data, start=1):
            ax.scatter(np.full(values.size, i) + np.linspace(-0.08, 0.08, values.size), values, s=10, alpha=0.6)
        ax.set_ylabel(label)
        ax.set_title(label + (f" ({skipped} undefined, not shown)" if skipped else ""), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def draw_bland_altman(ax, pred, ref, *, what: str = "volume", unit: str = "mL"):
    """Draw the Bland-Altman plot of ``pred`` against ``ref`` (same cases) into matplotlib axes ``ax``:
    difference against mean, the bias and the 95% limits of agreement (bias +- 1.96 sample SD;
    :func:`medseg.evaluation.statistics.bland_altman`). For notebooks: pass any axes; returns the numbers."""
    from medseg.evaluation.statistics import bland_altman

    agreement = bland_altman(pred, ref)
    ax.scatter(agreement["mean"], agreement["difference"], s=14)
    bias = agreement["bias"]
    if math.isfinite(bias):
        ax.axhline(bias, color="k", lw=0.8, label=f"bias {bias:.2f} {unit}")
    if math.isfinite(agreement["sd"]):
        for limit in (agreement["lower_limit"], agreement["upper_limit"]):
            ax.axhline(limit, color="k", ls="--", lw=0.8)
        ax.plot([], [], "k--", lw=0.8, label=f"95% limits ±{1.96 * agreement['sd']:.2f} {unit}")
    ax.set_xlabel(f"mean {what} ({unit})")
    ax.set_ylabel(f"difference ({unit})")
    if math.isfinite(bias):
        ax.legend(fontsize=7)
    return agreement


def plot_volume_agreement(per_case: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Scatter (pred vs ref) and Bland-Altman plots of liver and tumor volumes in mL (a region not scored
    is left out)."""
    import matplotlib.pyplot as plt

    regions = [r for r in REGIONS if np.isfinite(pd.to_numeric(per_case.get(f"{r}_ref_volume_ml"),
                                                                errors="coerce").astype(float)).any()]  # fmt: skip
    fig, axes = plt.subplots(max(1, len(regions)), 2, figsize=(8, 3.75 * max(1, len(regions))), squeeze=False)
    for row, region in enumerate(regions):
        pred = per_case[f"{region}_pred_volume_ml"].to_numpy(dtype=float)
        ref = per_case[f"{region}_ref_volume_ml"].to_numpy(dtype=float)
        ax = axes[row, 0]
        ax.scatter(ref, pred, s=14)
        top = max(float(np.nanmax(np.concatenate([ref, pred]))) if len(ref) else 1.0, 1e-6) * 1.05
        ax.plot([0, top], [0, top], "k--", lw=0.8)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel(f"reference {region} volume (mL)")
        ax.set_ylabel(f"predicted {region} volume (mL)")
        ax.set_title(f"{region}: predicted vs reference", fontsize=9)
        draw_bland_altman(axes[row, 1], pred, ref, what=f"{region} volume")
        axes[row, 1].set_ylabel("predicted - reference (mL)")
        axes[row, 1].set_title(f"{region}: Bland-Altman", fontsize=9)
    fig.tight_layout()
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def write_report(
    out_dir: str | os.PathLike,
    per_case: pd.DataFrame,
    summary: dict,
    *,
    lesions: pd.DataFrame | None = None,
    figures: bool = True,
    detection: dict | None = None,
) -> dict[str, Path]:
    """Write ``per_case.csv``, ``summary.json``, ``lesions.csv`` (when given) and figures to ``out_dir``.

    Returns:
        The written files by name.
    """
    out = Path(out_dir)
    if _status(out / "summary.json") != "incomplete":
        mark_incomplete(out)
    written = {"per_case": _write_csv(per_case, out / "per_case.csv")}
    if lesions is not None:
        written["lesions"] = _write_csv(lesions, out / "lesions.csv")
    if figures and len(per_case):
        written["boxplots"] = plot_boxplots(per_case, out / "boxplots.png")
        written["volumes"] = plot_volume_agreement(per_case, out / "volumes.png")
    if figures and detection and detection["n_pred"]:  # lesion FROC curve (medseg.evaluation.detection)
        from medseg.evaluation.detection import plot_froc

        written["froc"] = plot_froc(detection, out / "froc.png")
    for name in earlier_report_files(out):  # an earlier evaluate's file this run does not rewrite would mislead
        if name in REPORT_FILES[:-1] and out / name not in written.values():
            (out / name).unlink(missing_ok=True)
    files = [*sorted(p.name for p in written.values()), "summary.json"]
    written["summary"] = atomic_write_json(out / "summary.json", {"status": "complete", "files": files, **summary})
    logger.info("wrote %s", ", ".join(str(p) for p in written.values()))
    return written


def mark_incomplete(out_dir: str | os.PathLike) -> Path:
    """Replace ``summary.json`` by a ``"status": "incomplete"`` marker before any result is written.

    :func:`write_report` writes ``summary.json`` with ``"status": "complete"`` (and the list of files)
    last, so a run killed at any moment leaves either a complete set or a folder whose summary says
    ``incomplete``: the other files may be from this run or an earlier one.

    Raises:
        DataError: A report file name (``lesions.csv``, a figure...) is taken by a file no earlier
            ``evaluate`` wrote (``medseg predict``'s ``lesions.csv``, the user's own): nothing is overwritten.
    """
    out = Path(out_dir)
    earlier = earlier_report_files(out)
    foreign = [name for name in REPORT_FILES[:-1] if (out / name).exists() and name not in earlier]
    if (out / "summary.json").exists() and _status(out / "summary.json") is None:
        foreign.append("summary.json")
    if foreign:
        raise DataError(f"{', '.join(foreign)} here not written by medseg evaluate: not overwritten; choose an empty "
                        "--out folder", path=out)
    return atomic_write_json(out / "summary.json", {
        "status": "incomplete",
        "note": "evaluation started but did not finish; the other files here may be partial or from an earlier run",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "earlier_files": sorted(earlier),
    })


def earlier_report_files(out_dir: str | os.PathLike) -> set[str]:
    """Names of the report files an earlier ``evaluate`` wrote into ``out_dir``: the ``files`` of a complete
    ``summary.json``, or those an interrupted run's marker carried over (``earlier_files``); only these may
    be replaced or removed (issue #29.9: ``--no-figures`` removed figures it never wrote)."""
    try:
        summary = json.loads((Path(out_dir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    names = (summary.get("files") or summary.get("earlier_files") or []) if isinstance(summary, dict) else []
    return {str(n) for n in names if isinstance(n, str)} | ({"summary.json"} if names else set())


def _status(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError, AttributeError):
        return None
