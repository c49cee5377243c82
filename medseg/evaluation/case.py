"""Evaluate one case: per-region metrics, lesion detection and tumor burden of two LiTS label maps.

The result row is the ``per_case.csv`` contract: ``case``, then ``<region>_<metric>`` for the regions
``liver`` (labels {1, 2}) and ``tumor`` ({2}) and every key of
:data:`~medseg.evaluation.binary.BINARY_METRIC_KEYS`, then ``lesions_tp``, ``lesions_fp``,
``lesions_fn``, ``lesions_pred``, ``lesions_ref``, ``tumor_burden_pred_percent``, ``tumor_burden_ref_percent``,
``tumor_burden_error_percent`` (percent of liver volume; error = pred - ref) and, for pooled (global) Dice,
``<region>_pred_voxels``, ``<region>_ref_voxels``, ``<region>_intersection_voxels``, then the
confusion-matrix metrics of the three classes (:mod:`medseg.evaluation.confusion`: ``pixel_accuracy``,
``mean_class_accuracy``, ``mean_iou``, ``frequency_weighted_iou`` and the counts ``cm_<ref>_<pred>``).
:attr:`CaseResult.detections` holds the scored predicted lesions for AP and FROC
(:mod:`medseg.evaluation.detection`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medseg.boxes import grow_box, joint_bounding_box
from medseg.evaluation.binary import BINARY_METRIC_KEYS, binary_metrics
from medseg.evaluation.confusion import confusion_matrix, confusion_row
from medseg.evaluation.detection import score_lesions
from medseg.evaluation.lesions import match_lesions
from medseg.evaluation.result import REGIONS, CaseResult
from medseg.labels import region_masks, tumor_burden_percent

__all__ = ["REGIONS", "CaseResult", "EvaluationConfig", "evaluate_case", "not_scored"]

@dataclass(frozen=True)
class EvaluationConfig:
    """Settings of a ``medseg``-protocol evaluation run (medseg's defaults; see ``docs/metrics.md`` for where
    they differ from the LiTS 2017 scorer, which ``protocol="lits2017"`` reproduces).

    Attributes:
        nsd_tolerance_mm: Surface-Dice tolerance in mm.
        iou_threshold: Lesion detection IoU threshold (detected when IoU > threshold).
        connectivity: Lesion connectivity, 1 (faces), 2 (+edges) or 3 (+corners).
    """

    nsd_tolerance_mm: float = 2.0
    iou_threshold: float = 0.5
    connectivity: int = 3

    def __post_init__(self) -> None:
        if not math.isfinite(self.nsd_tolerance_mm) or self.nsd_tolerance_mm < 0:
            raise ValueError(f"nsd_tolerance_mm must be a finite number >= 0, got {self.nsd_tolerance_mm!r}")
        if not 0.0 <= self.iou_threshold < 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1), got {self.iou_threshold!r}")
        if self.connectivity not in (1, 2, 3):
            raise ValueError(f"connectivity must be 1, 2 or 3, got {self.connectivity!r}")


def evaluate_case(
    pred: np.ndarray,
    ref: np.ndarray,
    *,
    spacing_mm: Sequence[float],
    case: str = "",
    config: EvaluationConfig | None = None,
    tumor_probability: np.ndarray | None = None,
    affine: np.ndarray | None = None,
) -> CaseResult:
    """All metrics of one predicted LiTS label map against its reference, under medseg's conventions (the
    ``medseg`` protocol; :func:`medseg.evaluation.protocols.score_case` chooses between protocols).

    Args:
        pred: ``(X, Y, Z)`` predicted label map (0 background, 1 liver, 2 tumor).
        ref: Reference label map, same shape and grid.
        spacing_mm: Voxel size along each array axis, in mm.
        case: Case id stored in the row.
        config: Metric settings (:class:`EvaluationConfig` defaults when ``None``).
        tumor_probability: Optional tumor probability map (same shape) giving each predicted lesion its
            confidence for AP/FROC (its maximum); ``None``: confidence 1 (argmax).
        affine: ``(4, 4)`` affine of the grid: volumes (region and lesion) from ``|det|`` of its 3x3;
            ``None``: the product of ``spacing_mm``.

    Returns:
        A :class:`~medseg.evaluation.result.CaseResult`; see the module docstring for the row's columns.
    """
    config = config or EvaluationConfig()
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"case {case!r}: prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if tumor_probability is not None and np.shape(tumor_probability) != pred.shape:
        raise ValueError(f"case {case!r}: tumor_probability shape {np.shape(tumor_probability)} differs from the "
                         f"prediction's {pred.shape}")
    window = _joint_window(pred, ref)  # views: every metric is computed inside the labelled voxels' box
    outside = pred.size - math.prod(s.stop - s.start for s in window)  # background in both maps
    pred, ref = pred[window], ref[window]
    if tumor_probability is not None:
        tumor_probability = np.asarray(tumor_probability)[window]
    pred_masks, ref_masks = region_masks(pred), region_masks(ref)
    row: dict[str, float | int | str] = {"case": case}
    for region in REGIONS:
        p, r = pred_masks[region], ref_masks[region]
        metrics = binary_metrics(p, r, spacing_mm=spacing_mm, nsd_tolerance_mm=config.nsd_tolerance_mm, affine=affine)
        row.update({f"{region}_{key}": metrics[key] for key in BINARY_METRIC_KEYS})
    detection = match_lesions(
        pred_masks["tumor"],
        ref_masks["tumor"],
        spacing_mm=spacing_mm,
        iou_threshold=config.iou_threshold,
        connectivity=config.connectivity,
        affine=affine,
    )
    row.update(
        lesions_tp=detection["tp"],
        lesions_fp=detection["fp"],
        lesions_fn=detection["fn"],
        lesions_pred=detection["n_pred"],
        lesions_ref=detection["n_ref"],
    )
    row.update(_count_columns(pred_masks, ref_masks))
    matrix = confusion_matrix(pred, ref, num_classes=3)  # 0 background, 1 liver, 2 tumor
    matrix[0, 0] += outside
    row.update(confusion_row(matrix))
    detections = score_lesions(pred_masks["tumor"], ref_masks["tumor"], tumor_probability=tumor_probability,
                               iou_threshold=config.iou_threshold, connectivity=config.connectivity)  # fmt: skip
    lesions = [{"case": case, **lesion} for lesion in detection["lesions"]]
    return CaseResult(case=case, row=row, lesions=lesions, detections=detections)


def not_scored(result: CaseResult, regions: Sequence[str]) -> CaseResult:
    """``result`` with the figures of ``regions`` the reference does not declare set to "not scored" (NaN:
    empty CSV cells, ``null`` in JSON), never 0 or 1.

    Only ``"tumor"`` can be left unscored (another tool's liver map holds no tumor class): its metrics, the
    lesion counts and table, the tumor burden, and the three-class confusion figures (a two-class reference
    has no tumor row) become NaN; the liver region (labels 1 and 2 of the prediction) is scored as usual.

    Raises:
        ValueError: A region other than ``"tumor"``.
    """
    if not regions:
        return result
    if set(regions) != {"tumor"}:
        raise ValueError(f"only the tumor region can be left unscored, got {list(regions)}")
    liver_only = ("case", "prediction_missing", *(k for k in result.row if k.startswith("liver_")))
    row = {key: (value if key in liver_only else math.nan) for key, value in result.row.items()}
    return CaseResult(case=result.case, row=row, lesions=[], detections=None)


def _count_columns(pred_masks: dict[str, np.ndarray], ref_masks: dict[str, np.ndarray]) -> dict[str, float | int]:
    """Voxel counts per region (predicted, reference, intersection) and the tumor burden of both maps."""
    row: dict[str, float | int] = {}
    counts = {}
    for region in REGIONS:
        p, r = pred_masks[region], ref_masks[region]
        counts[region] = (int(np.count_nonzero(p)), int(np.count_nonzero(r)), int(np.count_nonzero(p & r)))
        row[f"{region}_pred_voxels"], row[f"{region}_ref_voxels"], row[f"{region}_intersection_voxels"] = counts[region]
    row["tumor_burden_pred_percent"] = tumor_burden_percent(counts["liver"][0], counts["tumor"][0])
    row["tumor_burden_ref_percent"] = tumor_burden_percent(counts["liver"][1], counts["tumor"][1])
    row["tumor_burden_error_percent"] = row["tumor_burden_pred_percent"] - row["tumor_burden_ref_percent"]
    return row


def _joint_window(pred: np.ndarray, ref: np.ndarray) -> tuple[slice, ...]:
    """The joint bounding box of both maps' labelled voxels plus one voxel of margin, clamped to the array.

    Cropping to it (views, for C- and Fortran-ordered arrays alike: nibabel returns the latter) leaves
    every metric unchanged: the margin is background, and components, surfaces and overlaps lie inside.
    Both maps empty: a one-voxel window.
    """
    box = joint_bounding_box(pred, ref)
    if box is None:
        return tuple(slice(0, min(1, n)) for n in pred.shape)
    return grow_box(box, 1, pred.shape)
