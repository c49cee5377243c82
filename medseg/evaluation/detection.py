"""Lesion detection as ranked retrieval: a confidence per predicted lesion, average precision (AP) over a
cohort and the FROC curve (sensitivity against false positives per scan).

**Detections.** Every connected component of the predicted tumor mask is one detection
(:func:`medseg.evaluation.lesions.label_lesions`). Its *confidence* is its maximum tumor probability
when a probability volume is given (e.g. the ``<case>_prob_tumor.nii.gz`` of ``medseg predict
--save-probabilities``), else 1 for every lesion of the argmax map, which reduces AP to
``precision x recall`` and the FROC curve to one point.

**Matching** (PASCAL VOC / COCO style, Everingham et al. 2010): detections are taken in decreasing
confidence; each is a true positive when its IoU with a still unmatched reference lesion is strictly
greater than ``iou_threshold`` (0.5; the reference lesion of highest IoU is taken), otherwise a false
positive. Above 0.5 a lesion can overlap at most one partner that much, so the matching is unique. This
differs from the LiTS detection counts (:mod:`medseg.evaluation.lesions`), which merge all predicted
pieces overlapping a reference lesion: a lesion split in two is one hit there, and here (if no piece
alone reaches the IoU) a miss plus two false positives.

**Average precision.** With detections of the whole cohort sorted by confidence and ``P_k``, ``R_k`` the
precision and recall above the ``k``-th distinct confidence (recall over *all* reference lesions,
including those no detection reaches), ``AP = sum_k (R_k - R_{k-1}) P_k`` with ``R_0 = 0``: the
step-wise area of scikit-learn's ``average_precision_score``, without interpolation. The two coincide
when every reference lesion is matched by some detection; otherwise scikit-learn (which sees only the
detections) is larger by the factor ``n_ref / n_matched``. AP is NaN without reference lesions; 0 with
reference lesions and no detection.

**FROC** (Bandos et al. 2009; the LUNA16 challenge, Setio et al. 2017): at every confidence threshold,
sensitivity ``TP / n_ref`` against mean false positives per scan ``FP / n_scans``. The summary reads the
sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per scan (the highest sensitivity reached
without exceeding that rate) and their mean, the competition performance metric (CPM).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.boxes import grow_box, joint_bounding_box
from medseg.evaluation.lesions import label_lesions

__all__ = [
    "FROC_FP_RATES",
    "PROBABILITY_SUFFIX",
    "LesionScores",
    "average_precision",
    "cohort_detection",
    "froc_curve",
    "plot_froc",
    "probability_files",
    "score_lesions",
]

#: A tumor probability map is ``<case>_prob_tumor.nii[.gz]`` (what ``medseg predict --save-probabilities``
#: is to write beside ``<case>_seg.nii.gz``).
PROBABILITY_SUFFIX = "_prob_tumor"

#: False-positive rates per scan at which the FROC summary reads the sensitivity (LUNA16).
FROC_FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class LesionScores:
    """The scored detections of one scan.

    Attributes:
        confidence: ``(n_pred,)`` confidence of each predicted lesion.
        matched: ``(n_pred,)`` True where the lesion is a true positive.
        iou: ``(n_pred,)`` IoU with the matched reference lesion (best overlap when unmatched; 0 if none).
        n_ref: Reference lesions of the scan.
        probabilities: Whether the confidences came from a probability volume (else all 1).
    """

    confidence: np.ndarray
    matched: np.ndarray
    iou: np.ndarray
    n_ref: int
    probabilities: bool

    def rows(self, case: str = "") -> list[dict]:
        """One dict per predicted lesion (``case``, ``pred_lesion``, ``confidence``, ``iou``, ``matched``)."""
        return [{"case": case, "pred_lesion": i + 1, "confidence": float(c), "iou": float(u), "matched": bool(m)}
                for i, (c, u, m) in enumerate(zip(self.confidence, self.iou, self.matched))]  # fmt: skip


def probability_files(folder: str | os.PathLike) -> dict[str, Path]:
    """Tumor probability maps ``<case>_prob_tumor.nii[.gz]`` of ``folder`` by case id (empty if none)."""
    found = {}
    for path in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
        for ext in (".nii.gz", ".nii"):
            if path.is_file() and path.name.endswith(PROBABILITY_SUFFIX + ext):
                found[path.name[: -len(PROBABILITY_SUFFIX + ext)]] = path
    return found


def _overlapping_pairs(
    pred_labels: np.ndarray, n_pred: int, ref_labels: np.ndarray, n_ref: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pred, ref, iou)`` of every predicted/reference lesion pair that shares a voxel, ordered by predicted
    then reference label (1-based labels; pairs without overlap have IoU 0 and are left out).

    Sparse: one pair code ``pred * (n_ref + 1) + ref`` per overlapping voxel, counted with ``np.unique``, so
    memory grows with the overlapping voxels, not with ``n_pred x n_ref`` (a dense table of 32,000 lesions
    per map is 8 GB).
    """
    both = (pred_labels > 0) & (ref_labels > 0)
    codes, inter = np.unique(pred_labels[both].astype(np.int64) * (n_ref + 1) + ref_labels[both], return_counts=True)
    pred, ref = np.divmod(codes, n_ref + 1)
    pred_sizes = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)
    ref_sizes = np.bincount(ref_labels.ravel(), minlength=n_ref + 1)
    return pred, ref, inter / (pred_sizes[pred] + ref_sizes[ref] - inter)


def _match_detections(
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray], confidence: np.ndarray, n_ref: int, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching by decreasing confidence: ``(matched, best IoU)`` per predicted lesion (module docstring).

    Each detection takes the still unmatched reference lesion of highest IoU (ties: the lower label) when
    that IoU is above ``iou_threshold``; ``best`` is the matched IoU, else the best overlap (0 if none).
    """
    pred, ref, iou = pairs
    starts = np.searchsorted(pred, np.arange(1, confidence.size + 2))  # pairs of lesion p: starts[p-1]:starts[p]
    matched, best = np.zeros(confidence.size, dtype=bool), np.zeros(confidence.size)
    free = np.ones(n_ref + 1, dtype=bool)
    for p in np.argsort(-confidence, kind="stable"):  # highest confidence first
        partners, overlaps = ref[starts[p] : starts[p + 1]], iou[starts[p] : starts[p + 1]]
        if not partners.size:
            continue
        candidates = np.where(free[partners], overlaps, -1.0)
        k = int(np.argmax(candidates))
        best[p] = overlaps.max()
        if candidates[k] > iou_threshold:
            matched[p], best[p], free[partners[k]] = True, overlaps[k], False
    return matched, best


def score_lesions(
    pred: np.ndarray,
    ref: np.ndarray,
    *,
    tumor_probability: np.ndarray | None = None,
    iou_threshold: float = 0.5,
    connectivity: int = 3,
) -> LesionScores:
    """Confidence and true/false-positive status of every predicted lesion of one scan.

    Args:
        pred: ``(H, W[, D])`` predicted tumor mask.
        ref: Reference tumor mask of the same shape.
        tumor_probability: Optional tumor probability in ``[0, 1]`` of the same shape; ``None``: every
            predicted lesion has confidence 1 (argmax prediction).
        iou_threshold: A detection matches when its IoU is strictly greater than this (``[0, 1)``).
        connectivity: Lesion connectivity (1 faces .. 3 faces, edges and corners in 3D).

    Raises:
        ValueError: Shapes differ, or the probability is outside ``[0, 1]`` / not finite.
    """
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred.shape} and {ref.shape}")
    if not 0.0 <= iou_threshold < 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1), got {iou_threshold!r}")
    if tumor_probability is not None and np.shape(tumor_probability) != pred.shape:
        raise ValueError(f"tumor_probability shape {np.shape(tumor_probability)} differs from the prediction's "
                         f"{pred.shape}")
    box = joint_bounding_box(pred, ref)  # label inside the lesions' box (views): same components, no copy
    box = grow_box(box, 1, pred.shape) if box is not None else tuple(slice(0, min(1, n)) for n in pred.shape)
    pred, ref = pred[box], ref[box]
    pred_labels, n_pred = label_lesions(pred, connectivity=connectivity)
    ref_labels, n_ref = label_lesions(ref, connectivity=connectivity)
    if tumor_probability is None:
        confidence = np.ones(n_pred)
    else:
        prob = np.asarray(np.asarray(tumor_probability)[box], dtype=np.float64)
        if n_pred and not (np.isfinite(prob).all() and prob.min() >= 0.0 and prob.max() <= 1.0):
            raise ValueError("tumor_probability must hold finite probabilities in [0, 1]")
        confidence = np.asarray(ndimage.maximum(prob, pred_labels, index=np.arange(1, n_pred + 1)), dtype=np.float64)
    pairs = _overlapping_pairs(pred_labels, n_pred, ref_labels, n_ref)
    matched, best = _match_detections(pairs, confidence, n_ref, iou_threshold)
    return LesionScores(confidence, matched, best, int(n_ref), tumor_probability is not None)


def _operating_points(confidence: np.ndarray, matched: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative ``(TP, FP, threshold)`` at every distinct confidence, highest first."""
    order = np.argsort(-confidence, kind="stable")
    conf, hit = confidence[order], matched[order].astype(np.int64)
    tp, fp = np.cumsum(hit), np.cumsum(1 - hit)
    last = np.r_[np.flatnonzero(np.diff(conf)), conf.size - 1]  # end of each run of equal confidences
    return tp[last], fp[last], conf[last]


def average_precision(confidence: Sequence[float], matched: Sequence[bool], *, n_ref: int) -> float:
    """AP of scored detections against ``n_ref`` reference lesions (definition: module docstring)."""
    confidence, matched = np.asarray(confidence, dtype=np.float64), np.asarray(matched, dtype=bool)
    if confidence.shape != matched.shape:
        raise ValueError(f"confidence {confidence.shape} and matched {matched.shape} differ in shape")
    if int(matched.sum()) > n_ref:
        raise ValueError(f"{int(matched.sum())} matched detections for only n_ref={n_ref} reference lesions")
    if n_ref == 0:
        return math.nan
    if confidence.size == 0:
        return 0.0
    tp, fp, _ = _operating_points(confidence, matched)
    recall, precision = tp / n_ref, tp / (tp + fp)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def froc_curve(
    confidence: Sequence[float], matched: Sequence[bool], *, n_ref: int, n_scans: int
) -> dict[str, list[float]]:
    """``{"fp_per_scan", "sensitivity", "threshold"}`` at every distinct confidence, highest first."""
    if n_scans < 1:
        raise ValueError(f"n_scans must be >= 1, got {n_scans}")
    confidence, matched = np.asarray(confidence, dtype=np.float64), np.asarray(matched, dtype=bool)
    if confidence.size == 0:
        return {"fp_per_scan": [], "sensitivity": [], "threshold": []}
    tp, fp, threshold = _operating_points(confidence, matched)
    sensitivity = tp / n_ref if n_ref else np.full(tp.shape, np.nan)
    return {
        "fp_per_scan": (fp / n_scans).tolist(),
        "sensitivity": sensitivity.tolist(),
        "threshold": threshold.tolist(),
    }


def _sensitivity_at(curve: dict[str, list[float]], rate: float) -> float:
    reached = [s for f, s in zip(curve["fp_per_scan"], curve["sensitivity"]) if f <= rate]
    return max(reached) if reached else 0.0


def _confidence_source(scans: list[LesionScores]) -> str:
    given = sum(s.probabilities for s in scans)
    if given and given == len(scans):
        return "max tumor probability"
    return "max tumor probability where given, else 1" if given else "1 (argmax: no probability maps)"


def cohort_detection(scans: Iterable[LesionScores], *, iou_threshold: float = 0.5) -> dict:
    """AP and FROC over a cohort of scored scans: the ``lesion_detection`` block of ``summary.json``."""
    scans = list(scans)
    confidence = np.concatenate([s.confidence for s in scans]) if scans else np.zeros(0)
    matched = np.concatenate([s.matched for s in scans]) if scans else np.zeros(0, bool)
    n_ref, n_scans = sum(s.n_ref for s in scans), max(1, len(scans))
    curve = froc_curve(confidence, matched, n_ref=n_ref, n_scans=n_scans)
    at = {str(rate): (_sensitivity_at(curve, rate) if n_ref else math.nan) for rate in FROC_FP_RATES}
    return {
        "iou_threshold": iou_threshold,
        "confidence": _confidence_source(scans),
        "n_scans": len(scans),
        "n_pred": int(confidence.size),
        "n_ref": int(n_ref),
        "tp": int(matched.sum()),
        "fp": int(confidence.size - matched.sum()),
        "average_precision": average_precision(confidence, matched, n_ref=n_ref),
        "froc": {**curve, "sensitivity_at_fp_per_scan": at,
                 "cpm": float(np.mean(list(at.values()))) if n_ref else math.nan},
    }  # fmt: skip


def plot_froc(block: dict, path: str | os.PathLike) -> Path:
    """Draw the FROC curve of a :func:`cohort_detection` block to ``path`` (PNG, written atomically)."""
    from matplotlib.figure import Figure

    from medseg.utils.atomic import atomic_path

    froc = block["froc"]
    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot()
    fp, sensitivity = [0.0, *froc["fp_per_scan"]], [0.0, *froc["sensitivity"]]
    ax.step(fp, sensitivity, where="post", marker="o", markersize=3)
    ax.hlines(sensitivity[-1], fp[-1], max(FROC_FP_RATES[-1], fp[-1]), linestyles="dotted")  # no lower threshold
    for rate in FROC_FP_RATES:
        ax.axvline(rate, color="0.85", linewidth=0.8, zorder=0)
    ax.set_xscale("symlog", linthresh=0.125)
    ax.set_xticks([0.0, *FROC_FP_RATES], ["0", "1/8", "1/4", "1/2", "1", "2", "4", "8"])
    ax.set_xlim(0.0, 1.1 * max(FROC_FP_RATES[-1], fp[-1]))
    ax.set_xlabel("false positives per scan")
    ax.set_ylabel(f"sensitivity (IoU > {block['iou_threshold']})")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"FROC: {block['n_ref']} lesions, {block['n_scans']} scans; AP {block['average_precision']:.3f}, "
                 f"CPM {froc['cpm']:.3f}", fontsize=9)  # fmt: skip
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    return path
