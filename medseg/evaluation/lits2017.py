"""The LiTS 2017 scorer's conventions (``medseg evaluate --protocol lits2017``), with its bugs fixed.

Reproduces, in the scorer's own names and units, the figures of the official LiTS challenge scoring
program (``program/evaluate.py``, ``helpers/calc_metric.py`` and ``helpers/surface.py`` of the challenge's
scoring repository; Bilic et al., *The Liver Tumor Segmentation Benchmark (LiTS)*, Medical Image Analysis
2023), which no longer runs on current numpy/scipy/nibabel. Written from the conventions, not the code:

* **lesions** are the connected components of label 2 with SciPy's default structure (6-connectivity);
* **detection**: each reference lesion joins the group of the predicted lesion that overlaps it most
  (ties: the lower predicted label), so reference lesions covered by one predicted lesion are *merged*;
  each predicted lesion that touches a reference lesion is matched to the group it overlaps most (ties: the
  group with the lower label). A group is detected when ``IoU(G, P(G)) > 0.5`` (``*_greater_zero``: > 0),
  ``P(G)`` being the union of the predicted lesions matched to it. Per case ``TP`` = detected groups,
  ``FP`` = predicted lesions - TP (a split lesion costs an FP), ``FN`` = reference lesions - TP;
  cohort precision and recall are 0, not NaN, when their denominator is 0;
* **segmentation scores** (per detected group, and for the liver): ``dice``; ``jaccard = dice / (2 - dice)``;
  ``voe = 1 - jaccard``; ``rvd = (|P| - |R|) / |R|`` (medpy 0.2.2's ``ravd(R, P)``, which the scorer
  called: the paper's sign; medpy >= 0.3 swapped the arguments' roles); ``assd``, ``rmsd``, ``msd`` in mm
  on the 18-neighbourhood surface ``A ^ binary_erosion(A, 18-neighbourhood)``, distances pooled over both
  surfaces (:func:`medseg.evaluation.surface.surface_voxels` with ``connectivity=2``);
* **"liver exists"** means the prediction has label 1. Without it the case scores liver dice 0, jaccard 0,
  voe 1 and :data:`LARGE` (9001) for rvd/assd/rmsd/msd, and the global liver Dice adds only the reference
  liver to its denominator. The same values score an empty reference or prediction mask;
* **tumor burden** is a fraction, ``|label 2| / |labels >= 1|``, :data:`LARGE` for a prediction without
  label 1; ``tumor_burden_diff = ref - pred``; ``RMSE_Tumorburden`` and ``MAXERROR_Tumorburden`` (the
  *signed* maximum of the differences) over the cohort;
* **lesion Dice**: ``lesion_dice`` is the mean over all detected lesions of the cohort;
  ``lesion_dice_per_case`` the mean of per-case tumor Dice (1 when both tumor masks are empty);
  ``*_dice_global = 2 sum I / sum S``.

Bugs of the scorer that are **fixed** here (each changes its output only where it crashed or was wrong):

1. A reference without lesions crashed it (``detect_lesions`` returns five values where three are
   unpacked). Here: TP 0, FN 0, FP = number of predicted lesions.
2. The IoU union was counted on the detection mask after it had been relabelled with reference-group
   labels (``d == p_id``), so the union, and detection, depended on label numbering. Here the union is
   ``|P(G) ∪ G|``.
3. An undetected group of ``k`` merged reference lesions subtracted ``k`` from a TP count that had added 1,
   giving negative TP (and FP/FN above the lesion counts). Here a group counts once: detected or not.
4. A reference without liver divided by zero in the tumor burden. Here its burden difference is NaN,
   skipped (and counted) by the cohort figures. A missing prediction (the scorer stops) is scored as an
   empty one by :func:`medseg.evaluation.runner.evaluate_folders`, which flags it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from medseg.evaluation.lesions import label_lesions
from medseg.evaluation.result import CaseResult
from medseg.evaluation.surface import crop_pair, distance_metrics, surface_distances
from medseg.geometry import check_spacing
from medseg.labels import region_masks

__all__ = [
    "CONVENTIONS",
    "LARGE",
    "SEGMENTATION_KEYS",
    "LesionGroup",
    "evaluate_case_lits2017",
    "group_lesions",
    "scores_text",
    "segmentation_scores",
    "summarize_lits2017",
]

#: The scorer's value for an undefined distance, volume difference or tumor burden.
LARGE = 9001.0
#: Per-object scores of the scorer's ``compute_segmentation_scores``, in its order.
SEGMENTATION_KEYS = ("dice", "jaccard", "voe", "rvd", "assd", "rmsd", "msd")
#: Scores of an object missing from the prediction or the reference (and of a case without liver).
_UNDEFINED = {"dice": 0.0, "jaccard": 0.0, "voe": 1.0, "rvd": LARGE, "assd": LARGE, "rmsd": LARGE, "msd": LARGE}
#: Lesion connectivity: SciPy's default structure, 6 neighbours in 3D.
_CONNECTIVITY = 1
#: Surface neighbourhood rank of the scorer's ``Surface.compute_contour``: 18 neighbours in 3D.
_SURFACE_CONNECTIVITY = 2
#: IoU thresholds of the scorer's two detection passes (strictly greater than).
_THRESHOLDS = {"": 0.5, "_greater_zero": 0.0}
#: The fixed settings, as ``summary.json`` records them.
CONVENTIONS = {
    "lesion_connectivity": _CONNECTIVITY,
    "surface_connectivity": _SURFACE_CONNECTIVITY,
    "iou_thresholds": list(_THRESHOLDS.values()),
    "undefined_value": LARGE,
    "tumor_burden": "fraction, ref - pred",
}


@dataclass(frozen=True)
class LesionGroup:
    """Merged reference lesions and the predicted lesions matched to them (labels are 1-based).

    Attributes:
        label: The group's label, its lowest reference label.
        ref_labels: Reference lesions in the group.
        pred_labels: Predicted lesions matched to the group (empty if none touches it).
        intersection: ``|P(G) ∩ G|`` in voxels.
        union: ``|P(G) ∪ G|`` in voxels.
    """

    label: int
    ref_labels: tuple[int, ...]
    pred_labels: tuple[int, ...]
    intersection: int
    union: int

    @property
    def iou(self) -> float:
        return self.intersection / self.union if self.union else 0.0


def segmentation_scores(pred: np.ndarray, ref: np.ndarray, *, spacing_mm: Sequence[float]) -> dict[str, float]:
    """The scorer's per-object scores of two binary masks: :data:`SEGMENTATION_KEYS`.

    Args:
        pred: ``(X, Y, Z)`` predicted mask.
        ref: Reference mask of the same shape.
        spacing_mm: Voxel size along each array axis, in mm.

    Returns:
        ``dice, jaccard, voe, rvd`` (fractions) and ``assd, rmsd, msd`` (mm, 18-neighbourhood surfaces);
        the scorer's defaults (0, 0, 1, then :data:`LARGE`) when either mask is empty.
    """
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    spacing = check_spacing(spacing_mm, pred.ndim)
    pair = crop_pair(pred, ref)
    if pair is None or not pred.any() or not ref.any():
        return dict(_UNDEFINED)
    p, r = pair
    a, b, inter = int(np.count_nonzero(p)), int(np.count_nonzero(r)), int(np.count_nonzero(p & r))
    dice = 2.0 * inter / (a + b)
    jaccard = dice / (2.0 - dice)
    d_pr, d_rp = surface_distances(p, r, spacing_mm=spacing, cropped=True, connectivity=_SURFACE_CONNECTIVITY)
    distances = distance_metrics(d_pr, d_rp)
    return {
        "dice": dice,
        "jaccard": jaccard,
        "voe": 1.0 - jaccard,
        "rvd": (a - b) / b,
        "assd": distances["assd_mm"],
        "rmsd": distances["rmsd_mm"],
        "msd": distances["mssd_mm"],
    }


def group_lesions(pred_labels: np.ndarray, ref_labels: np.ndarray) -> list[LesionGroup]:
    """The scorer's merging and matching of lesions (see the module docstring), with the union fixed.

    Args:
        pred_labels: ``(X, Y, Z)`` predicted lesion labels, 0 background, 1..n consecutive.
        ref_labels: Reference lesion labels on the same grid.

    Returns:
        One :class:`LesionGroup` per merged reference lesion, ordered by label (none without reference
        lesions).
    """
    n_pred, n_ref = int(pred_labels.max(initial=0)), int(ref_labels.max(initial=0))
    pred_sizes = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)
    ref_sizes = np.bincount(ref_labels.ravel(), minlength=n_ref + 1)
    pairs = _overlap_pairs(pred_labels, ref_labels, n_pred)  # (ref, pred, voxels), ordered by ref then pred
    group_of = _merge_reference_lesions(pairs, n_ref)
    members: dict[int, list[int]] = {}
    for g in range(1, n_ref + 1):
        members.setdefault(group_of[g], []).append(g)
    matched = _match_predicted_lesions(pairs, group_of)
    preds_of: dict[int, list[int]] = {}  # per group, in one pass: linear in the pairs, not groups x lesions
    for p in sorted(matched):
        preds_of.setdefault(matched[p], []).append(p)
    inter_of: dict[int, int] = {}
    for g, p, voxels in pairs:
        if matched[p] == group_of[g]:
            inter_of[group_of[g]] = inter_of.get(group_of[g], 0) + voxels
    groups = []
    for label in sorted(members):
        preds, inter = preds_of.get(label, []), inter_of.get(label, 0)
        size = int(sum(ref_sizes[g] for g in members[label])) + int(sum(pred_sizes[p] for p in preds))
        groups.append(LesionGroup(label, tuple(members[label]), tuple(preds), int(inter), size - int(inter)))
    return groups


def _overlap_pairs(pred_labels: np.ndarray, ref_labels: np.ndarray, n_pred: int) -> list[tuple[int, int, int]]:
    both = (pred_labels > 0) & (ref_labels > 0)
    stride = n_pred + 1
    keys, counts = np.unique(ref_labels[both].astype(np.int64) * stride + pred_labels[both], return_counts=True)
    return [(key // stride, key % stride, count) for key, count in zip(keys.tolist(), counts.tolist())]


def _merge_reference_lesions(pairs: list[tuple[int, int, int]], n_ref: int) -> dict[int, int]:
    """Group label (lowest member) of every reference lesion: lesions sharing their best predicted lesion."""
    best: dict[int, tuple[int, int]] = {}  # ref -> (voxels, pred); pairs come by ascending pred: ties keep the lower
    for g, p, voxels in pairs:
        if g not in best or voxels > best[g][0]:
            best[g] = (voxels, p)
    first_of_owner: dict[int, int] = {}
    group_of = {}
    for g in range(1, n_ref + 1):
        owner = best[g][1] if g in best else None
        group_of[g] = g if owner is None else first_of_owner.setdefault(owner, g)
    return group_of


def _match_predicted_lesions(pairs: list[tuple[int, int, int]], group_of: dict[int, int]) -> dict[int, int]:
    """The group each overlapping predicted lesion overlaps most (ties: the lower group label)."""
    overlap: dict[int, dict[int, int]] = {}
    for g, p, voxels in pairs:
        per_group = overlap.setdefault(p, {})
        per_group[group_of[g]] = per_group.get(group_of[g], 0) + voxels
    return {p: min(per_group, key=lambda label: (-per_group[label], label)) for p, per_group in overlap.items()}


def evaluate_case_lits2017(
    pred: np.ndarray, ref: np.ndarray, *, spacing_mm: Sequence[float], case: str = ""
) -> CaseResult:
    """One case scored as the LiTS 2017 scorer would (bugs fixed; see the module docstring).

    Args:
        pred: ``(X, Y, Z)`` predicted label map (0 background, 1 liver, 2 tumor).
        ref: Reference label map, same shape and grid.
        spacing_mm: Voxel size along each array axis, in mm (the reference header's zooms).
        case: Case id stored in the row.

    Returns:
        A :class:`~medseg.evaluation.result.CaseResult` whose row holds ``case``, ``liver_<score>`` for
        :data:`SEGMENTATION_KEYS`, ``liver_exists``, ``lesion_dice_per_case``, ``TP``, ``FP``, ``FN``
        (IoU > 0.5) and ``TP_greater_zero``, ``FP_greater_zero``, ``FN_greater_zero`` (IoU > 0),
        ``n_predicted``, ``n_reference``, ``tumor_burden_diff`` (ref - pred, fractions) and the global-Dice
        voxel sums ``lesion_I``, ``lesion_S``, ``liver_I``, ``liver_S``; and one lesion row per merged
        reference lesion (``lesion``, ``reference_lesions``, ``n_predicted_matched``, ``iou``,
        ``detected``, ``detected_greater_zero`` and the scores, NaN unless detected).
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"case {case!r}: prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if pred.ndim != 3:
        raise ValueError(f"case {case!r}: the LiTS 2017 protocol needs 3D label maps, got shape {pred.shape}")
    spacing = check_spacing(spacing_mm, 3)
    pred_masks, ref_masks = region_masks(pred), region_masks(ref)
    liver_exists = bool(pred_masks["parenchyma"].any())
    row: dict[str, float | int | str] = {"case": case}
    liver = segmentation_scores(pred_masks["liver"], ref_masks["liver"], spacing_mm=spacing) if liver_exists else {}
    row.update({f"liver_{key}": liver.get(key, _UNDEFINED[key]) for key in SEGMENTATION_KEYS})
    row["liver_exists"] = liver_exists
    lesion_row, lesions = _lesion_figures(pred_masks["tumor"], ref_masks["tumor"], spacing=spacing, case=case)
    row.update(lesion_row)
    row["tumor_burden_diff"] = _burden(ref_masks) - (_burden(pred_masks) if liver_exists else LARGE)
    row.update(_dice_sums(pred_masks, ref_masks, liver_exists=liver_exists))
    return CaseResult(case=case, row=row, lesions=lesions)


def _lesion_figures(pred: np.ndarray, ref: np.ndarray, *, spacing: np.ndarray, case: str) -> tuple[dict, list[dict]]:
    """Detection counts, per-case tumor Dice and the lesion rows of one case's tumor masks."""
    pred_n, ref_n = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    inter = int(np.count_nonzero(pred & ref))
    row: dict[str, float | int] = {
        "lesion_dice_per_case": 1.0 if pred_n + ref_n == 0 else 2.0 * inter / (pred_n + ref_n)
    }
    pair = crop_pair(pred, ref)  # same components and label order as the full masks, far less work
    pred_labels, n_pred = label_lesions(pair[0], connectivity=_CONNECTIVITY) if pair else (None, 0)
    ref_labels, n_ref = label_lesions(pair[1], connectivity=_CONNECTIVITY) if pair else (None, 0)
    groups = group_lesions(pred_labels, ref_labels) if n_ref else []
    for suffix, threshold in _THRESHOLDS.items():
        tp = sum(bool(g.pred_labels) and g.iou > threshold for g in groups)
        row.update({f"TP{suffix}": tp, f"FP{suffix}": n_pred - tp, f"FN{suffix}": n_ref - tp})
    row.update(n_predicted=n_pred, n_reference=n_ref)
    boxes = (ndimage.find_objects(pred_labels), ndimage.find_objects(ref_labels)) if groups else ([], [])
    lesions = [_group_row(g, (pred_labels, ref_labels), boxes, spacing=spacing, case=case) for g in groups]
    return row, lesions


def _group_row(group: LesionGroup, labels: tuple, boxes: tuple, *, spacing: np.ndarray, case: str) -> dict:
    """The lesions-table row of one merged reference lesion; scores only when detected (IoU > 0.5).

    ``labels`` and ``boxes`` are the (predicted, reference) label maps and their ``find_objects`` boxes.
    """
    detected = bool(group.pred_labels) and group.iou > _THRESHOLDS[""]
    row = {
        "case": case,
        "lesion": group.label,
        "reference_lesions": " ".join(str(g) for g in group.ref_labels),
        "n_predicted_matched": len(group.pred_labels),
        "iou": group.iou,
        "detected": detected,
        "detected_greater_zero": bool(group.pred_labels) and group.iou > _THRESHOLDS["_greater_zero"],
    }
    scores = dict.fromkeys(SEGMENTATION_KEYS, math.nan)
    if detected:
        members = [boxes[0][p - 1] for p in group.pred_labels] + [boxes[1][g - 1] for g in group.ref_labels]
        box = tuple(slice(min(b[a].start for b in members), max(b[a].stop for b in members)) for a in range(3))
        pred_mask = np.isin(labels[0][box], group.pred_labels)
        scores = segmentation_scores(pred_mask, np.isin(labels[1][box], group.ref_labels), spacing_mm=spacing)
    row.update(scores)
    return row


def _burden(masks: dict[str, np.ndarray]) -> float:
    """Tumor voxels over liver voxels (tumor included), a fraction; NaN without liver (the scorer crashed)."""
    liver = int(np.count_nonzero(masks["liver"]))
    return int(np.count_nonzero(masks["tumor"])) / liver if liver else math.nan


def _dice_sums(pred_masks: dict, ref_masks: dict, *, liver_exists: bool) -> dict[str, int]:
    """Global-Dice sums ``I`` (intersection) and ``S`` (sizes) of this case, as the scorer accumulates them."""
    sums = {}
    for region, name in (("tumor", "lesion"), ("liver", "liver")):
        p, r = pred_masks[region], ref_masks[region]
        counted = liver_exists or region == "tumor"
        sums[f"{name}_I"] = int(np.count_nonzero(p & r)) if counted else 0
        sums[f"{name}_S"] = int(np.count_nonzero(r)) + (int(np.count_nonzero(p)) if counted else 0)
    return sums


def summarize_lits2017(per_case: pd.DataFrame, lesions: pd.DataFrame) -> dict:
    """Cohort figures of the scorer (``scores.txt`` names) from per-case rows and lesion rows.

    Args:
        per_case: One row per case, as :func:`evaluate_case_lits2017` makes them.
        lesions: One row per merged reference lesion of all cases.

    Returns:
        ``{"n_cases", "scores": {name: value}, "detection": {...}, "tumor_burden": {"n", "n_nan"}}``;
        ``scores`` holds, in the scorer's order, ``lesion_precision``, ``lesion_recall``,
        ``lesion_precision_greater_zero``, ``lesion_recall_greater_zero``, ``lesion_<score>`` (mean over
        detected lesions; the scorer's defaults when none), ``lesion_dice_per_case``,
        ``lesion_dice_global``, ``liver_<score>`` (mean over cases), ``liver_dice_per_case``,
        ``liver_dice_global``, ``RMSE_Tumorburden`` and ``MAXERROR_Tumorburden``.
    """
    counts = {key: int(per_case[key].sum()) for key in _count_columns()} if len(per_case) else {}
    scores: dict[str, float] = {}
    for suffix in _THRESHOLDS:
        tp, fp, fn = (counts.get(f"{k}{suffix}", 0) for k in ("TP", "FP", "FN"))
        scores[f"lesion_precision{suffix}"] = tp / (tp + fp) if tp + fp else 0.0
        scores[f"lesion_recall{suffix}"] = tp / (tp + fn) if tp + fn else 0.0
    detected = lesions[lesions["detected"].astype(bool)] if "detected" in lesions.columns else lesions.iloc[0:0]
    for key in SEGMENTATION_KEYS:
        scores[f"lesion_{key}"] = float(detected[key].mean()) if len(detected) else _UNDEFINED[key]
    scores["lesion_dice_per_case"] = _mean(per_case, "lesion_dice_per_case")
    scores["lesion_dice_global"] = _dice_global(per_case, "lesion")
    scores.update({f"liver_{key}": _mean(per_case, f"liver_{key}") for key in SEGMENTATION_KEYS})
    scores["liver_dice_per_case"] = _mean(per_case, "liver_dice")  # per case equal to liver_dice
    scores["liver_dice_global"] = _dice_global(per_case, "liver")
    burden = pd.to_numeric(per_case.get("tumor_burden_diff", pd.Series(dtype=float)), errors="coerce").astype(float)
    defined = burden[np.isfinite(burden)]
    scores["RMSE_Tumorburden"] = float(np.sqrt(np.mean(defined**2))) if len(defined) else math.nan
    scores["MAXERROR_Tumorburden"] = float(defined.max()) if len(defined) else math.nan
    return {
        "n_cases": len(per_case),
        "scores": scores,
        "detection": counts,
        "tumor_burden": {"n": int(defined.size), "n_nan": int(burden.size - defined.size)},
    }


def scores_text(scores: dict[str, float]) -> str:
    """The scorer's ``scores.txt``: one ``name: value`` line per figure, three decimals."""
    return "".join(f"{name}: {value:.3f}\n" for name, value in scores.items())


def _count_columns() -> list[str]:
    return [f"{k}{suffix}" for suffix in _THRESHOLDS for k in ("TP", "FP", "FN")] + ["n_predicted", "n_reference"]


def _dice_global(frame: pd.DataFrame, name: str) -> float:
    """``2 sum I / sum S`` over the cases; NaN when every mask is empty (the scorer's 0 / 0)."""
    total = float(frame[f"{name}_S"].sum()) if len(frame) else 0.0
    return 2.0 * float(frame[f"{name}_I"].sum()) / total if total else math.nan


def _mean(frame: pd.DataFrame, column: str) -> float:
    return float(pd.to_numeric(frame[column], errors="coerce").astype(float).mean()) if len(frame) else math.nan
