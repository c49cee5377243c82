"""Lesion-wise evaluation (medseg protocol): connected components, detection, per-lesion Dice and ASSD.

Lesions are the connected components of the tumor mask (``scipy.ndimage.label``). The connectivity
is the neighbourhood rank of ``scipy.ndimage.generate_binary_structure``: 1 = faces (6 neighbours in 3D),
2 = faces and edges (18), 3 = faces, edges and corners (26, medseg's default). The LiTS 2017 scorer used
SciPy's default, 6-connectivity: ``--protocol lits2017`` (:mod:`medseg.evaluation.lits2017`) reproduces it.

Detection uses the LiTS criterion (Bilic et al., Medical Image Analysis 2023) counted per reference
lesion: a reference lesion ``r`` is *detected* when ``IoU(r, P(r)) > threshold`` (default 0.5), where
``P(r)`` is the union of all predicted lesions that overlap ``r`` (so a lesion split into several
predicted pieces can still count). Counts per case:

* TP = detected reference lesions; FN = reference lesions not detected;
* FP = predicted lesions that overlap no detected reference lesion (spurious or too poor to count).

This differs from the 2017 scorer, which merges reference lesions covered by one prediction before the
IoU test and counts FP as (predicted lesions - TP), so a split lesion costs an FP there (``docs/metrics.md``).
Cohort precision ``= TP / (TP + FP)``, recall ``= TP / (TP + FN)`` and F1 use counts summed over cases.
Every quantity here is computed from one table of overlap counts, not from per-lesion masks, except the
per-lesion ASSD, which runs :func:`medseg.evaluation.surface.surface_metrics` on the lesion's bounding box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medseg.boxes import union_box
from medseg.evaluation.surface import check_spacing, crop_pair, surface_metrics
from medseg.geometry import voxel_volume_ml

__all__ = ["label_lesions", "match_lesions"]


def label_lesions(mask: np.ndarray, *, connectivity: int = 3) -> tuple[np.ndarray, int]:
    """Label the connected components of ``mask`` (``(H, W[, D])``): ``(labels int32, count)``, 1..count."""
    mask = np.asarray(mask, dtype=bool)
    if not 1 <= connectivity <= mask.ndim:
        raise ValueError(f"connectivity must be 1..{mask.ndim} for a {mask.ndim}D mask, got {connectivity!r}")
    structure = ndimage.generate_binary_structure(mask.ndim, connectivity)
    labels, count = ndimage.label(mask, structure=structure, output=np.int32)
    return labels, int(count)


def match_lesions(
    pred: np.ndarray,
    ref: np.ndarray,
    *,
    spacing_mm: Sequence[float],
    iou_threshold: float = 0.5,
    connectivity: int = 3,
    affine: np.ndarray | None = None,
) -> dict:
    """LiTS lesion detection and per-lesion quality of a predicted tumor mask against the reference.

    Args:
        pred: ``(H, W[, D])`` predicted tumor mask.
        ref: Reference tumor mask of the same shape.
        spacing_mm: Voxel size along each array axis, in mm.
        iou_threshold: A reference lesion is detected when its IoU with the merged overlapping predicted
            lesions is strictly greater than this.
        connectivity: Component connectivity (see module docstring).
        affine: ``(4, 4)`` affine of the grid: lesion volumes use ``|det|`` of its 3x3 (exact on a tilted or
            sheared grid); ``None``: the product of ``spacing_mm``.

    Returns:
        ``{"tp", "fp", "fn", "n_pred", "n_ref", "lesions"}`` where ``lesions`` holds one dict per
        reference lesion: ``ref_lesion`` (1-based label), ``ref_volume_ml``, ``pred_volume_ml`` (of the
        merged overlapping prediction), ``iou``, ``detected``, ``dice`` and ``assd_mm`` (NaN when not
        detected), ``n_pred_overlapping``.
    """
    pred, ref, spacing = _checked_inputs(pred, ref, spacing_mm, iou_threshold)
    pair = crop_pair(pred, ref)  # joint bounding box plus an empty margin: same components, far less work
    if pair is None:
        return {"tp": 0, "fp": 0, "fn": 0, "n_pred": 0, "n_ref": 0, "lesions": []}
    labelled = _LabelledPair.of(*pair, connectivity=connectivity)
    overlap = _overlap_table(labelled)
    voxel_ml = voxel_volume_ml(spacing, affine=affine)
    lesions, matched_pred = [], set()
    for i in range(1, labelled.n_ref + 1):
        partners = overlap.get(i, {})
        row = _lesion_row(labelled, i, partners, iou_threshold=iou_threshold, voxel_ml=voxel_ml)
        if row["detected"]:
            matched_pred.update(partners)
            row["assd_mm"] = _lesion_assd_mm(labelled, i, partners, spacing=spacing)
        lesions.append(row)
    tp = sum(r["detected"] for r in lesions)
    return {
        "tp": int(tp),
        "fp": int(labelled.n_pred - len(matched_pred)),
        "fn": int(labelled.n_ref - tp),
        "n_pred": labelled.n_pred,
        "n_ref": labelled.n_ref,
        "lesions": lesions,
    }


def _checked_inputs(
    pred: np.ndarray, ref: np.ndarray, spacing_mm: Sequence[float], iou_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks and the spacing as an array, after checking shapes, spacing and threshold."""
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred.shape} and {ref.shape}")
    spacing = check_spacing(spacing_mm, pred.ndim)
    if not 0.0 <= iou_threshold < 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1), got {iou_threshold!r}")
    return pred, ref, spacing


@dataclass(frozen=True)
class _LabelledPair:
    """Lesion labels, sizes (voxels, index = label) and boxes of a predicted and a reference tumor mask."""

    pred_labels: np.ndarray
    ref_labels: np.ndarray
    n_pred: int
    n_ref: int
    pred_sizes: np.ndarray
    ref_sizes: np.ndarray
    pred_boxes: list
    ref_boxes: list

    @classmethod
    def of(cls, pred: np.ndarray, ref: np.ndarray, *, connectivity: int) -> _LabelledPair:
        pred_labels, n_pred = label_lesions(pred, connectivity=connectivity)
        ref_labels, n_ref = label_lesions(ref, connectivity=connectivity)
        return cls(
            pred_labels=pred_labels,
            ref_labels=ref_labels,
            n_pred=n_pred,
            n_ref=n_ref,
            pred_sizes=np.bincount(pred_labels.ravel(), minlength=n_pred + 1),
            ref_sizes=np.bincount(ref_labels.ravel(), minlength=n_ref + 1),
            pred_boxes=ndimage.find_objects(pred_labels),
            ref_boxes=ndimage.find_objects(ref_labels),
        )


def _overlap_table(labelled: _LabelledPair) -> dict[int, dict[int, int]]:
    """Voxel counts ``{ref lesion i: {pred lesion j: |r_i ∩ p_j|}}`` of every overlapping pair."""
    both = (labelled.pred_labels > 0) & (labelled.ref_labels > 0)
    stride = labelled.n_pred + 1
    pairs = labelled.ref_labels[both].astype(np.int64) * stride + labelled.pred_labels[both]
    keys, counts = np.unique(pairs, return_counts=True)
    overlap: dict[int, dict[int, int]] = {}
    for key, count in zip(keys.tolist(), counts.tolist()):
        overlap.setdefault(key // stride, {})[key % stride] = count
    return overlap


def _lesion_row(
    labelled: _LabelledPair, i: int, partners: dict[int, int], *, iou_threshold: float, voxel_ml: float
) -> dict:
    """The ``lesions`` row of reference lesion ``i`` against the union of its overlapping predictions."""
    inter = sum(partners.values())
    ref_size = int(labelled.ref_sizes[i])
    merged = int(sum(labelled.pred_sizes[j] for j in partners))
    iou = inter / (ref_size + merged - inter)
    detected = iou > iou_threshold
    return {
        "ref_lesion": i,
        "ref_volume_ml": float(ref_size) * voxel_ml,
        "pred_volume_ml": merged * voxel_ml,
        "n_pred_overlapping": len(partners),
        "iou": float(iou),
        "detected": bool(detected),
        "dice": float(2 * inter / (ref_size + merged)) if detected else float("nan"),
        "assd_mm": float("nan"),
    }


def _lesion_assd_mm(labelled: _LabelledPair, i: int, partners: dict[int, int], *, spacing: np.ndarray) -> float:
    """ASSD (mm) of reference lesion ``i`` and its merged predictions, on the box holding them all."""
    box = union_box([labelled.ref_boxes[i - 1], *(labelled.pred_boxes[j - 1] for j in partners)])
    lesion_ref = labelled.ref_labels[box] == i
    lesion_pred = np.isin(labelled.pred_labels[box], list(partners))
    return surface_metrics(lesion_pred, lesion_ref, spacing_mm=spacing)["assd_mm"]

