"""Multi-class metrics from one confusion matrix: pixel accuracy, mean class accuracy, per-class IoU and F1,
mean IoU and frequency-weighted IoU, as defined by Long et al. (CVPR 2015, "Fully Convolutional Networks
for Semantic Segmentation", section 5).

With ``n_ij`` the voxels of reference class ``i`` predicted as ``j``, ``t_i = sum_j n_ij`` (reference
voxels of class ``i``), ``p_j = sum_i n_ij`` (predicted voxels of ``j``) and ``N = sum_i t_i``:

* pixel accuracy ``sum_i n_ii / N``;
* class accuracy ``n_ii / t_i`` (recall of class ``i``); mean class accuracy: their mean;
* IoU ``n_ii / (t_i + p_i - n_ii)``; F1 (Dice) ``2 n_ii / (t_i + p_i)``; mean IoU: the mean of IoU;
* frequency-weighted IoU ``sum_i t_i IoU_i / N``.

Empty-class conventions (Long et al. average over all classes and leave the absent ones unspecified):

* a class **absent from both** reference and prediction has IoU, F1 and class accuracy NaN: nothing was
  there to find and nothing was found. It is *skipped* by every mean and *counted* in ``n_skipped``;
* a class **absent from the reference but predicted** has IoU 0 and F1 0 (all its voxels are false
  positives; these count in mean IoU), but class accuracy NaN (no reference voxels: recall is undefined),
  skipped by the mean class accuracy and counted in ``n_skipped_accuracy``; its frequency weight is 0;
* an empty volume (``N = 0``) has pixel accuracy and frequency-weighted IoU NaN.

One pass over the voxels: :func:`confusion_matrix` is ``np.bincount(ref * K + pred)`` over chunks of the
flattened arrays (bounded memory on LiTS-size volumes). scikit-learn's ``confusion_matrix`` gives the same
matrix but sorts and validates labels first, several passes slower; this is ours for that reason. A cohort
is scored by summing the per-case matrices (:func:`pooled_matrix`), i.e. every voxel of the cohort counts
once, as Long et al. score a data set.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "CONFUSION_KEYS",
    "confusion_matrix",
    "confusion_metrics",
    "confusion_row",
    "pooled_matrix",
    "summarize_confusion",
]

#: Scalar keys of :func:`confusion_metrics` (the per-class lists aside), in report order.
CONFUSION_KEYS = ("pixel_accuracy", "mean_class_accuracy", "mean_iou", "frequency_weighted_iou")
_CHUNK = 1 << 22  # voxels per bincount: 4 Mi voxels, ~32 MB of int64 index


def confusion_matrix(pred: np.ndarray, ref: np.ndarray, *, num_classes: int) -> np.ndarray:
    """``(K, K)`` int64 counts: row = reference class, column = predicted class.

    Args:
        pred: Predicted label map, any shape, integer labels in ``0 .. num_classes - 1``.
        ref: Reference label map of the same shape.
        num_classes: ``K``, background included.

    Raises:
        ValueError: Shapes differ, ``num_classes < 1``, or a label is outside ``0 .. K - 1`` (the message
            names the array and the value).
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    k = int(num_classes)
    counts = np.zeros(k * k, dtype=np.int64)
    if pred.ndim == 0:
        pred, ref = pred.reshape(1), ref.reshape(1)
    order = sorted(range(pred.ndim), key=lambda a: -abs(pred.strides[a]))  # outermost axis in memory first
    pred, ref = pred.transpose(order), ref.transpose(order)  # views: slabs of either memory order, no copy
    rows = max(1, _CHUNK // max(1, pred[:1].size))
    for start in range(0, pred.shape[0], rows):
        p = pred[start : start + rows].astype(np.int64).reshape(-1)
        r = ref[start : start + rows].astype(np.int64).reshape(-1)
        for name, values in (("prediction", p), ("reference", r)):
            if values.size and (values.min() < 0 or values.max() >= k):
                bad = values[(values < 0) | (values >= k)][0]
                raise ValueError(f"{name} holds label {bad}, outside 0..{k - 1} (num_classes={k})")
        r *= k
        r += p
        counts += np.bincount(r, minlength=k * k)
    return counts.reshape(k, k)


def pooled_matrix(matrices: Iterable[np.ndarray]) -> np.ndarray:
    """Sum of confusion matrices, smaller ones zero-padded to the largest ``K`` (a class no case has)."""
    matrices = [np.asarray(m, dtype=np.int64) for m in matrices]
    if not matrices:
        raise ValueError("pooled_matrix needs at least one confusion matrix")
    k = max(m.shape[0] for m in matrices)
    total = np.zeros((k, k), dtype=np.int64)
    for m in matrices:
        total[: m.shape[0], : m.shape[1]] += m
    return total


def _mean(values: np.ndarray) -> float:
    defined = values[np.isfinite(values)]
    return float(defined.mean()) if defined.size else math.nan


def confusion_metrics(matrix: np.ndarray, *, class_names: Sequence[str] | None = None) -> dict:
    """The metrics of the module docstring from a ``(K, K)`` confusion matrix (rows: reference).

    Returns:
        ``{"pixel_accuracy", "mean_class_accuracy", "mean_iou", "frequency_weighted_iou", "n_voxels",
        "n_skipped", "n_skipped_accuracy", "per_class": {name: {"iou", "f1", "accuracy", "ref_voxels",
        "pred_voxels"}}}``; NaN where the conventions above say so. ``class_names`` default to ``"0" ..``.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square (K, K), got shape {m.shape}")
    names = [str(i) for i in range(m.shape[0])] if class_names is None else [str(n) for n in class_names]
    if len(names) != m.shape[0]:
        raise ValueError(f"class_names has {len(names)} names for a {m.shape[0]}-class confusion matrix")
    hits, ref, pred = np.diag(m), m.sum(axis=1), m.sum(axis=0)
    total = float(m.sum())
    union = ref + pred - hits
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, hits / union, np.nan)
        f1 = np.where(ref + pred > 0, 2 * hits / (ref + pred), np.nan)
        accuracy = np.where(ref > 0, hits / ref, np.nan)
    fw_iou = float(np.sum(ref[union > 0] * iou[union > 0]) / total) if total > 0 else math.nan
    per_class = {
        name: {"iou": float(iou[i]), "f1": float(f1[i]), "accuracy": float(accuracy[i]),
               "ref_voxels": int(ref[i]), "pred_voxels": int(pred[i])}
        for i, name in enumerate(names)
    }  # fmt: skip
    return {
        "pixel_accuracy": float(hits.sum() / total) if total > 0 else math.nan,
        "mean_class_accuracy": _mean(accuracy),
        "mean_iou": _mean(iou),
        "frequency_weighted_iou": fw_iou,
        "n_voxels": int(total),
        "n_skipped": int(np.count_nonzero(union == 0)),
        "n_skipped_accuracy": int(np.count_nonzero(ref == 0)),
        "per_class": per_class,
    }


def confusion_row(matrix: np.ndarray) -> dict[str, float | int]:
    """Flat ``per_case.csv`` columns of one case: the four scalar metrics and the counts ``cm_<ref>_<pred>``
    (from which :func:`pooled_matrix` of a table can be rebuilt)."""
    matrix = np.asarray(matrix, dtype=np.int64)
    metrics = confusion_metrics(matrix)
    row: dict[str, float | int] = {key: metrics[key] for key in CONFUSION_KEYS}
    k = matrix.shape[0]
    row.update({f"cm_{i}_{j}": int(matrix[i, j]) for i in range(k) for j in range(k)})
    return row


def summarize_confusion(per_case: pd.DataFrame, *, class_names: Sequence[str] | None = None) -> dict | None:
    """The ``confusion`` block of ``summary.json`` from a per-case table with ``cm_<ref>_<pred>`` columns.

    Returns:
        ``{"pooled": {metrics of the summed matrix, "matrix": rows = reference}, "per_case": {key: {"mean",
        "median", "n", "n_nan"}}}`` (per-case values NaN by the conventions above are skipped and counted),
        or ``None`` when the table has no confusion counts.
    """
    k = 0
    while f"cm_{k}_{k}" in per_case.columns:
        k += 1
    if k == 0 or per_case.empty:
        return None
    matrix = np.array([[int(per_case[f"cm_{i}_{j}"].sum()) for j in range(k)] for i in range(k)], dtype=np.int64)
    names = None if class_names is None or len(class_names) != k else class_names
    block: dict = {"pooled": {**confusion_metrics(matrix, class_names=names), "matrix": matrix.tolist()}}
    per_case_stats = {}
    for key in CONFUSION_KEYS:
        values = pd.to_numeric(per_case[key], errors="coerce").to_numpy(dtype=np.float64)
        defined = values[np.isfinite(values)]
        per_case_stats[key] = {
            "mean": float(defined.mean()) if defined.size else math.nan,
            "median": float(np.median(defined)) if defined.size else math.nan,
            "n": int(defined.size),
            "n_nan": int(values.size - defined.size),
        }
    block["per_case"] = per_case_stats
    return block
