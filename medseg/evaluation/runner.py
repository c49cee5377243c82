"""Evaluate a folder of predictions against a folder of references: the work behind ``medseg evaluate``."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from medseg.errors import DataError
from medseg.evaluation.case import EvaluationConfig, not_scored
from medseg.evaluation.cohort import lesions_dataframe, to_dataframe
from medseg.evaluation.detection import cohort_detection, probability_files
from medseg.evaluation.matching import CasePair, check_pair_geometry, match_cases
from medseg.evaluation.protocols import (
    DEFAULT_PROTOCOL,
    check_protocol,
    protocol_config,
    score_case,
    summarize_protocol,
)
from medseg.evaluation.report import mark_incomplete, write_report
from medseg.evaluation.result import CaseResult
from medseg.geometry import axis_skew_deg
from medseg.io.label_map import LabelMapping
from medseg.labels import without_unannotated
from medseg.utils.lock import folder_lock
from medseg.utils.parallel import map_with_progress
from medseg.utils.progress import tqdm_disable

__all__ = ["EvaluateOptions", "EvaluationRun", "evaluate_folders", "evaluate_pair", "unscored_regions"]

logger = logging.getLogger(__name__)


@dataclass
class EvaluationRun:
    """What :func:`evaluate_folders` computed and wrote."""

    results: list[CaseResult]
    summary: dict
    files: dict[str, Path]
    missing_predictions: list[str]
    failed: dict[str, str] = field(default_factory=dict)


def evaluate_pair(pair: CasePair, config: EvaluationConfig, protocol: str = DEFAULT_PROTOCOL, *,
                  labels=None, pred_labels=None, probabilities: Mapping[str, Path] | None = None) -> CaseResult:
    """Read one reference (and its prediction, or an empty map if missing) and evaluate it.

    ``probabilities`` (case id -> tumor probability map, :func:`medseg.evaluation.detection.probability_files`)
    gives the case's predicted lesions their confidence for AP/FROC; a case without one scores its lesions
    with confidence 1 (argmax).

    Both are read with :func:`medseg.io.reader.read_label_map`: values checked, ``labels`` (reference)
    and ``pred_labels`` (prediction) mappings applied, the prediction brought onto the reference's voxel
    order when it is the same grid stored differently (a DICOM SEG reference is placed on the prediction's
    grid instead).
    """
    from medseg.io.dicom_seg_reader import is_dicom_seg
    from medseg.io.reader import read_label_map

    if pair.pred is not None and is_dicom_seg(pair.ref):
        pred = read_label_map(pair.pred, labels=pred_labels)
        ref = read_label_map(pair.ref, labels=labels, like=pred)
    else:
        ref = read_label_map(pair.ref, labels=labels)
        pred = None if pair.pred is None else read_label_map(pair.pred, labels=pred_labels, like=ref)
    pred_array = np.zeros(ref.shape, dtype=np.uint8) if pred is None else pred.array
    # partial annotations: only the reference's annotated voxels are scored (the prediction is dense)
    pred_array, ref_array = without_unannotated(pred_array, ref.array, LabelMapping.parse(labels).ignore)
    skew = axis_skew_deg(ref.affine)
    if skew > 0.01:  # overlap metrics are exact on any grid; millimetre ones are not
        logger.warning("%s: voxel axes are %.1f° from orthogonal (gantry tilt or sheared affine): volumes use "
                       "the true voxel volume, but surface distances (ASSD, HD95, NSD) assume orthogonal axes",
                       pair.case, skew)
    probability = (probabilities or {}).get(pair.case) if pred is not None else None
    result = score_case(
        protocol, pred_array, ref_array, spacing_mm=ref.spacing_mm, case=pair.case, config=config, affine=ref.affine,
        tumor_probability=None if probability is None else _read_probability(probability, ref),
    )  # fmt: skip
    result.row["prediction_missing"] = pair.pred is None
    return not_scored(result, unscored_regions(LabelMapping.parse(labels)))


def unscored_regions(labels: LabelMapping) -> tuple[str, ...]:
    """Regions the references do not declare: ``("tumor",)`` for a mapping without tumor values (another
    tool's liver map, ``--labels liver=5``), else none."""
    return ("tumor",) if labels.explicit and not labels.tumor else ()


def _read_probability(path: Path, ref) -> np.ndarray:
    """A tumor probability map on the reference's grid and voxel order, values checked to lie in [0, 1]."""
    from medseg.io.orientation import align_to
    from medseg.io.reader import read_volume

    volume = align_to(read_volume(path), ref, what="tumor probability map", reference_what="reference")
    array = np.asarray(volume.array, dtype=np.float32)
    if not (np.isfinite(array).all() and array.min(initial=0.0) >= 0.0 and array.max(initial=0.0) <= 1.0):
        raise DataError("tumor probability map must hold probabilities in [0, 1]", path=path)
    return array


def _evaluate_or_reason(pair: CasePair, **kwargs) -> CaseResult | tuple[str, str]:
    """:func:`evaluate_pair`, or ``(case, one-line reason)`` when the case's files are bad."""
    try:
        return evaluate_pair(pair, **kwargs)
    except DataError as exc:
        return pair.case, str(exc)


@dataclass(frozen=True)
class EvaluateOptions:
    """How :func:`evaluate_folders` runs: one field per ``medseg evaluate`` option (see its docstring).

    Attributes:
        config: Metric settings (``None``: :class:`EvaluationConfig` defaults; only for the medseg protocol).
        workers: Parallel processes (``None``: one per core).
        figures: Draw the box and volume plots.
        progress: Progress bar (``None``: when stderr is a terminal).
        protocol: ``"medseg"`` or ``"lits2017"`` (:data:`~medseg.evaluation.protocols.PROTOCOLS`).
        labels: The references' values -> regions (:class:`LabelMapping` or its CLI strings).
        pred_labels: The predictions' values -> regions.
        probabilities: Folder of ``<case>_prob_tumor`` maps (``None``: the predictions' folder).
        allow_missing: Score a reference without prediction as an empty prediction.
    """

    config: EvaluationConfig | None = None
    workers: int | None = None
    figures: bool = True
    progress: bool | None = None
    protocol: str = DEFAULT_PROTOCOL
    labels: LabelMapping | Sequence[str] | None = None
    pred_labels: LabelMapping | Sequence[str] | None = None
    probabilities: str | os.PathLike | None = None
    allow_missing: bool = False


def evaluate_folders(
    pred_dir: str | os.PathLike,
    ref_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: EvaluateOptions | None = None,
    **fields,
) -> EvaluationRun:
    """Match, check, evaluate (in parallel) and report a folder of predictions.

    Lesion AP and FROC (``summary.json`` ``lesion_detection``, ``froc.png``) rank the predicted lesions by
    their maximum tumor probability, read from ``<case>_prob_tumor.nii[.gz]`` in ``probabilities``
    (default: ``pred_dir``); cases without that file, and every case when there is none, rank theirs with
    confidence 1, the argmax (:mod:`medseg.evaluation.detection`).

    ``labels`` / ``pred_labels`` map the references' / predictions' values (or DICOM SEG segments) to
    liver and tumor (:class:`~medseg.io.label_map.LabelMapping`; LiTS values when ``None``); both are
    recorded in ``summary.json`` (``labels``). A case whose files are bad (unreadable, bad label values,
    a prediction on another grid: the same grid in another voxel order is fine) is skipped with a
    one-line reason in the log, in :attr:`EvaluationRun.failed` and in ``summary.json``
    (``failed_cases``); the other cases are scored.

    ``protocol`` (:data:`~medseg.evaluation.protocols.PROTOCOLS`) chooses the conventions: ``"medseg"``
    (``config`` applies) or ``"lits2017"`` (the LiTS 2017 scorer's fixed conventions, names and units,
    :mod:`medseg.evaluation.lits2017`; ``config`` must be left at its defaults, and no figures are drawn).
    ``summary.json`` records the protocol.

    A reference case without a prediction of the same case id is an error (one line listing the ids, before
    any metric runs) unless ``allow_missing``, which scores it as an empty prediction (the LiTS convention)
    and lists it under ``missing`` in ``summary.json``. A prediction folder without any prediction is
    always an error. A prediction without reference is logged and ignored.

    ``out_dir`` is locked for the run (a second evaluation into it is refused) and its ``summary.json``
    says ``"status": "incomplete"`` until every result file is written (:mod:`medseg.evaluation.report`).

    The options are an :class:`EvaluateOptions`, or its fields given as keywords (``workers=1``), which
    replace those of ``options``.

    Raises:
        DataError: Folder missing or empty, duplicate case ids, reference cases without prediction (unless
            ``allow_missing``), or no case could be evaluated.
        FolderLockedError: Another process is evaluating into ``out_dir``.
        TypeError: A keyword that is not a field of :class:`EvaluateOptions`.
    """
    o = replace(options or EvaluateOptions(), **fields)
    config, protocol, labels, pred_labels = o.config, o.protocol, o.labels, o.pred_labels
    check_protocol(protocol)
    if protocol != DEFAULT_PROTOCOL and config not in (None, EvaluationConfig()):
        raise ValueError(f"config {config!r} does not apply to protocol {protocol!r}: its conventions are fixed")
    config = config or EvaluationConfig()
    labels, pred_labels = LabelMapping.parse(labels), LabelMapping.parse(pred_labels)
    if unscored_regions(labels) and protocol != DEFAULT_PROTOCOL:
        raise DataError(f"--protocol {protocol} scores tumors, but the references declare no tumor label "
                        f"(--labels {labels.to_json()}); use the default protocol", path=ref_dir)
    pairs, unmatched = match_cases(pred_dir, ref_dir)
    probability_maps = probability_files(pred_dir if o.probabilities is None else o.probabilities)
    unmatched = [path for path in unmatched if path not in probability_maps.values()]
    for path in unmatched:
        logger.warning("prediction %s has no reference (case %s); ignored", path, path.name)
    missing = [pair.case for pair in pairs if pair.pred is None]
    if missing and not o.allow_missing:
        raise DataError(f"no prediction for {len(missing)} of {len(pairs)} reference case(s): {', '.join(missing)} "
                        "(misnamed? --allow-missing scores them as empty predictions)", path=pred_dir)
    if missing:
        logger.warning("no prediction for %d case(s): %s; counted as empty", len(missing), ", ".join(missing))
    failed = {pair.case: p for pair in pairs if (p := check_pair_geometry(pair))}  # headers only, before work
    with folder_lock(out_dir, "evaluate"):
        mark_incomplete(out_dir)
        outcomes = map_with_progress(
            partial(
                _evaluate_or_reason, config=config, protocol=protocol, labels=labels, pred_labels=pred_labels,
                probabilities=probability_maps,
            ),
            [pair for pair in pairs if pair.case not in failed],
            workers=o.workers,
            desc="evaluate",
            disable=tqdm_disable(o.progress),
        )
        failed.update(r for r in outcomes if isinstance(r, tuple))
        for reason in failed.values():  # the CLI prints them; the API has them in run.failed and the summary
            logger.debug("skipped: %s", reason)
        results = [r for r in outcomes if isinstance(r, CaseResult)]
        if not results:
            raise DataError(f"no case could be evaluated ({len(failed)} bad): " + "; ".join(failed.values()))
        extra = {"failed_cases": [{"case": c, "reason": r} for c, r in failed.items()],
                 "labels": {"reference": labels.to_json(), "prediction": pred_labels.to_json()}}
        run = _report(out_dir, results, missing, config, figures=o.figures, protocol=protocol, extra=extra,
                      not_scored=unscored_regions(labels))
        run.failed = failed
        return run


def _report(out_dir, results: list[CaseResult], missing: list[str], config: EvaluationConfig, *,
            figures: bool, protocol: str = DEFAULT_PROTOCOL, extra: dict | None = None,
            not_scored: tuple[str, ...] = ()) -> EvaluationRun:
    per_case, lesions = to_dataframe(results), lesions_dataframe(results)
    summary = summarize_protocol(protocol, per_case, lesions, not_scored=not_scored)
    summary["missing"] = missing
    summary.update(extra or {})
    summary["config"] = protocol_config(protocol, config)
    figures = figures and protocol == DEFAULT_PROTOCOL  # the box and volume plots are drawn from medseg's columns
    detection = None
    if protocol == DEFAULT_PROTOCOL and not not_scored:  # lesion AP and FROC (medseg.evaluation.detection)
        scored = [r.detections for r in results if r.detections is not None]
        summary["lesion_detection"] = detection = cohort_detection(scored, iou_threshold=config.iou_threshold)
    files = write_report(out_dir, per_case, summary, lesions=lesions, figures=figures,
                         detection=detection)  # fmt: skip
    return EvaluationRun(results=results, summary=summary, files=files, missing_predictions=missing)
