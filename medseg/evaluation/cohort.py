"""Cohort aggregates of per-case results: statistics per metric, global Dice, detection and burden error.

* Per region and metric: mean with its 95% bootstrap confidence interval (``ci95``), median, sample
  standard deviation (``std``, ``ddof=1``), min, max over the cases where the value is defined
  (:mod:`medseg.evaluation.statistics`); NaN values (e.g. HD95 with one empty mask) are skipped and
  counted in ``n_nan``. A region the references do not have (``not_scored``) has no statistics at all.
* Global Dice per region (LiTS "Dice global"): ``2 * sum|A ∩ B| / sum(|A| + |B|)`` over all cases,
  in voxels, so large structures weigh more; 1 when every case is empty.
* Lesion detection: precision ``TP / (TP + FP)``, recall ``TP / (TP + FN)``, F1 from the summed counts
  (NaN when a denominator is 0).
* References: how many hold a tumor (``tumor_ref_voxels > 0``) and how many are tumor-free, so a tumor
  Dice averaged over tumor-free references (1 for an empty prediction, 0 for any false positive) is not
  misread.
* Tumor burden: RMSE and maximal absolute error of ``tumor_burden_pred_percent - tumor_burden_ref_percent`` (percent).
* Confusion (``confusion``): pixel accuracy, mean class accuracy, per-class IoU/F1, mean and
  frequency-weighted IoU of the confusion matrix summed over cases (``pooled``), and per-case statistics
  (:mod:`medseg.evaluation.confusion`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from medseg.evaluation.binary import BINARY_METRIC_KEYS
from medseg.evaluation.confusion import summarize_confusion
from medseg.evaluation.result import REGIONS, CaseResult
from medseg.evaluation.statistics import DEFAULT_BOOTSTRAP, BootstrapSettings, describe
from medseg.labels import LITS_LABELS

__all__ = ["lesions_dataframe", "summarize", "to_dataframe"]


def to_dataframe(results: Iterable[CaseResult | Mapping]) -> pd.DataFrame:
    """One row per case (``case`` column first), from :class:`CaseResult` objects or row dicts."""
    rows = [r.row if isinstance(r, CaseResult) else dict(r) for r in results]
    return pd.DataFrame(rows)


def lesions_dataframe(results: Iterable[CaseResult]) -> pd.DataFrame:
    """One row per reference lesion over all cases (``case``, ``ref_lesion``, ``iou``, ``detected``, ...)."""
    return pd.DataFrame([lesion for result in results for lesion in result.lesions])


def _stats(values: pd.Series, settings: BootstrapSettings) -> dict[str, float | int]:
    return describe(pd.to_numeric(values, errors="coerce").astype(float).to_numpy(), settings)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def summarize(per_case: pd.DataFrame | Iterable[CaseResult | Mapping], *, not_scored: Sequence[str] = (),
              settings: BootstrapSettings = DEFAULT_BOOTSTRAP) -> dict:
    """Cohort summary (see module docstring) of a per-case table or list of results.

    Args:
        per_case: The per-case table (or results).
        not_scored: Regions the references do not declare (e.g. ``("tumor",)`` for another tool's liver
            map): their block is ``None`` and their lesion and burden figures are left out.
        settings: How confidence intervals are computed.

    Returns:
        ``{"n_cases", "statistics", "not_scored", "regions": {region: {"dice_global", metric: stats} or None},
        "detection": {...}, "tumor_burden": {...}}``; JSON-serialisable.
    """
    frame = per_case if isinstance(per_case, pd.DataFrame) else to_dataframe(per_case)
    summary: dict = {"n_cases": len(frame), "statistics": settings.describe_method(),
                     "not_scored": list(not_scored), "regions": {}}  # fmt: skip
    if "tumor_ref_voxels" in frame.columns:
        with_tumor = int((pd.to_numeric(frame["tumor_ref_voxels"], errors="coerce") > 0).sum())
        summary["references"] = {"with_tumor": with_tumor, "without_tumor": len(frame) - with_tumor}
    for region in REGIONS:
        if region in not_scored:
            summary["regions"][region] = None
            continue
        block: dict = {}
        inter_col, pred_col, ref_col = (f"{region}_{k}_voxels" for k in ("intersection", "pred", "ref"))
        if {inter_col, pred_col, ref_col} <= set(frame.columns):
            total = float(frame[pred_col].sum() + frame[ref_col].sum())
            block["dice_global"] = 2.0 * float(frame[inter_col].sum()) / total if total > 0 else 1.0
        for key in BINARY_METRIC_KEYS:
            column = f"{region}_{key}"
            if column in frame.columns:
                block[key] = _stats(frame[column], settings)
        summary["regions"][region] = block
    if "tumor" not in not_scored and {"lesions_tp", "lesions_fp", "lesions_fn"} <= set(frame.columns):
        tp, fp, fn = (int(frame[c].sum()) for c in ("lesions_tp", "lesions_fp", "lesions_fn"))
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        f1 = _ratio(2 * tp, 2 * tp + fp + fn)
        summary["detection"] = {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}
    if "tumor" not in not_scored and "tumor_burden_error_percent" in frame.columns:
        error = pd.to_numeric(frame["tumor_burden_error_percent"], errors="coerce").astype(float)
        defined = error[np.isfinite(error)]
        summary["tumor_burden"] = {
            "rmse_percent": float(np.sqrt(np.mean(defined**2))) if len(defined) else math.nan,
            "max_abs_error_percent": float(defined.abs().max()) if len(defined) else math.nan,
            "n": int(defined.size),
            "n_nan": int(error.size - defined.size),
        }
    confusion = None if not_scored else summarize_confusion(frame, class_names=list(LITS_LABELS.values()))
    if confusion is not None:  # pixel accuracy, mean / frequency-weighted IoU (medseg.evaluation.confusion)
        summary["confusion"] = confusion
    return summary
