"""Two models, or two readers, on the same cases: the work behind ``medseg compare``.

Both prediction folders are evaluated against the same references (:func:`~medseg.evaluation.runner.
evaluate_folders`, into ``<out>/a`` and ``<out>/b``), then compared case by case on the cases both have:
paired differences ``a - b`` per metric, their mean with a bootstrap 95% confidence interval and the
Wilcoxon signed-rank p-value (:func:`medseg.evaluation.statistics.paired_comparison`), and Bland-Altman
agreement of the two predictions' liver and tumor volumes (``bland_altman.png``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from medseg.errors import DataError
from medseg.evaluation.runner import EvaluationRun
from medseg.evaluation.statistics import DEFAULT_BOOTSTRAP, BootstrapSettings, paired_comparison
from medseg.utils.atomic import atomic_path, atomic_write_csv, atomic_write_json

__all__ = ["COMPARED_METRICS", "CompareSettings", "Comparison", "compare_runs"]

#: The per-case columns compared (when both evaluations have them and the region is scored).
COMPARED_METRICS = ("liver_dice", "liver_hd95_mm", "liver_assd_mm", "liver_nsd", "tumor_dice", "tumor_hd95_mm",
                    "tumor_assd_mm", "lesions_tp", "lesions_fp", "lesions_fn", "liver_pred_volume_ml",
                    "tumor_pred_volume_ml", "tumor_burden_pred_percent")  # fmt: skip


@dataclass(frozen=True)
class CompareSettings:
    """What ``compare`` reports.

    Attributes:
        names: Display names of the two prediction sets (``("a", "b")``: the folders' names by default).
        bootstrap: How confidence intervals are computed.
        figures: Draw ``bland_altman.png``.
    """

    names: tuple[str, str] = ("a", "b")
    bootstrap: BootstrapSettings = DEFAULT_BOOTSTRAP
    figures: bool = True


@dataclass
class Comparison:
    """The paired comparison: per-case differences, per-metric statistics, and the files written."""

    per_case: pd.DataFrame
    metrics: dict[str, dict]
    files: dict[str, Path] = field(default_factory=dict)


def compare_runs(run_a: EvaluationRun, run_b: EvaluationRun, out_dir: str | os.PathLike,
                 settings: CompareSettings = CompareSettings()) -> Comparison:
    """Compare two evaluations of the same references case by case and write ``comparison.csv``,
    ``comparison.json`` (and ``bland_altman.png``) into ``out_dir``.

    Raises:
        DataError: The two evaluations share no case.
    """
    a = pd.DataFrame([r.row for r in run_a.results]).set_index("case")
    b = pd.DataFrame([r.row for r in run_b.results]).set_index("case")
    cases = [c for c in a.index if c in b.index]
    if not cases:
        raise DataError("the two prediction sets share no evaluated case", path=out_dir)
    not_scored = set(run_a.summary.get("not_scored", [])) | set(run_b.summary.get("not_scored", []))
    columns = [c for c in COMPARED_METRICS if c in a.columns and c in b.columns
               and not any(c.startswith(f"{region}_") for region in not_scored)]  # fmt: skip
    first, second = settings.names
    frame = pd.DataFrame({"case": cases})
    metrics = {}
    for column in columns:
        va, vb = (pd.to_numeric(t.loc[cases, column], errors="coerce").astype(float).to_numpy() for t in (a, b))
        frame[f"{column}_{first}"], frame[f"{column}_{second}"], frame[f"{column}_diff"] = va, vb, va - vb
        metrics[column] = paired_comparison(va, vb, settings.bootstrap)
    out = Path(out_dir)
    files = {"per_case": atomic_write_csv(out / "comparison.csv", frame)}
    if settings.figures:
        files["bland_altman"] = _plot_volumes(frame, out / "bland_altman.png", settings.names, not_scored)
    files["summary"] = atomic_write_json(out / "comparison.json", {
        "names": list(settings.names), "n_cases": len(cases), "not_scored": sorted(not_scored),
        "only_in": {first: sorted(set(a.index) - set(cases)), second: sorted(set(b.index) - set(cases))},
        "statistics": {**settings.bootstrap.describe_method(), "test": "Wilcoxon signed-rank, two-sided",
                       "difference": f"{first} - {second}"},
        "metrics": metrics})  # fmt: skip
    return Comparison(per_case=frame, metrics=metrics, files=files)


def _plot_volumes(frame: pd.DataFrame, path: Path, names: Sequence[str], not_scored: set[str]) -> Path:
    """Bland-Altman plots of the two predictions' liver and tumor volumes (``a - b`` against the mean)."""
    import matplotlib.pyplot as plt

    from medseg.evaluation.report import draw_bland_altman

    regions = [r for r in ("liver", "tumor") if r not in not_scored and f"{r}_pred_volume_ml_diff" in frame]
    fig, axes = plt.subplots(1, max(1, len(regions)), figsize=(4.5 * max(1, len(regions)), 3.8), squeeze=False)
    for ax, region in zip(axes[0], regions):
        column = f"{region}_pred_volume_ml"
        draw_bland_altman(ax, frame[f"{column}_{names[0]}"], frame[f"{column}_{names[1]}"], what=f"{region} volume")
        ax.set_ylabel(f"{names[0]} - {names[1]} (mL)")
        ax.set_title(f"{region} volume: {names[0]} vs {names[1]}", fontsize=9)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
    return path
