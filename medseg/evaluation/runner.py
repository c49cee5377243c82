"""Evaluate a folder of predictions against a folder of references: the work behind ``medseg evaluate``."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from medseg.errors import DataError
from medseg.evaluation.case import CaseResult, EvaluationConfig, evaluate_case
from medseg.evaluation.cohort import lesions_dataframe, to_dataframe
from medseg.evaluation.matching import CasePair, check_pair_geometry, match_cases
from medseg.evaluation.protocols import DEFAULT_PROTOCOL, check_protocol, summarize_protocol
from medseg.evaluation.report import mark_incomplete, write_report
from medseg.io.reader import read_volume
from medseg.utils.lock import folder_lock
from medseg.utils.parallel import map_with_progress

__all__ = ["EvaluationRun", "evaluate_folders", "evaluate_pair"]

logger = logging.getLogger(__name__)


@dataclass
class EvaluationRun:
    """What :func:`evaluate_folders` computed and wrote."""

    results: list[CaseResult]
    summary: dict
    files: dict[str, Path]
    missing_predictions: list[str]


def evaluate_pair(pair: CasePair, config: EvaluationConfig, protocol: str = DEFAULT_PROTOCOL) -> CaseResult:
    """Read one reference (and its prediction, or an empty map if missing) and evaluate it."""
    ref = read_volume(pair.ref)
    if pair.pred is None:
        pred_array = np.zeros(ref.shape, dtype=np.uint8)
    else:
        pred = read_volume(pair.pred)
        if not pred.same_geometry(ref):
            raise DataError(f"prediction grid differs from reference {pair.ref.name}", path=pair.pred)
        pred_array = pred.array
    result = evaluate_case(
        pred_array, ref.array, spacing_mm=ref.spacing_mm, case=pair.case, config=config, protocol=protocol
    )
    result.row["prediction_missing"] = pair.pred is None
    return result


def _json_safe(value):
    """Replace NaN/inf by ``None`` so the JSON is standard (readable outside Python)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evaluate_folders(
    pred_dir: str | os.PathLike,
    ref_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: EvaluationConfig | None = None,
    workers: int | None = None,
    figures: bool = True,
    progress: bool | None = None,
    protocol: str = DEFAULT_PROTOCOL,
) -> EvaluationRun:
    """Match, check, evaluate (in parallel) and report a folder of predictions.

    ``protocol`` (:data:`~medseg.evaluation.protocols.PROTOCOLS`) chooses the conventions: ``"medseg"``
    (``config`` applies) or ``"lits2017"`` (the LiTS 2017 scorer's fixed conventions, names and units,
    :mod:`medseg.evaluation.lits2017`; ``config`` must be left at its defaults, and no figures are drawn).
    ``summary.json`` records the protocol.

    A reference without prediction is evaluated against an empty map (and logged); a prediction without
    reference is logged and ignored. Any grid mismatch stops the run before computing, with one line per
    mismatching case in the log and in the raised error.

    ``out_dir`` is locked for the run (a second evaluation into it is refused) and its ``summary.json``
    says ``"status": "incomplete"`` until every result file is written (:mod:`medseg.evaluation.report`).

    Raises:
        DataError: Folder missing or empty, duplicate case ids, or prediction/reference grid mismatches.
        FolderLockedError: Another process is evaluating into ``out_dir``.
    """
    check_protocol(protocol)
    if protocol != DEFAULT_PROTOCOL and config not in (None, EvaluationConfig()):
        raise ValueError(f"config {config!r} does not apply to protocol {protocol!r}: its conventions are fixed")
    config = config or EvaluationConfig()
    pairs, unmatched = match_cases(pred_dir, ref_dir)
    for path in unmatched:
        logger.warning("prediction %s has no reference (case %s); ignored", path, path.name)
    missing = [pair.case for pair in pairs if pair.pred is None]
    if missing:
        logger.warning("no prediction for %d case(s): %s; counted as empty", len(missing), ", ".join(missing))
    problems = [p for p in (check_pair_geometry(pair) for pair in pairs) if p]
    if problems:
        raise DataError(f"{len(problems)} prediction(s) do not match their reference grid: " + "; ".join(problems))
    with folder_lock(out_dir, "evaluate"):
        mark_incomplete(out_dir)
        results = map_with_progress(
            partial(evaluate_pair, config=config, protocol=protocol),
            pairs,
            workers=workers,
            desc="evaluate",
            disable=None if progress is None else not progress,
        )
        return _report(out_dir, results, missing, config, figures=figures, protocol=protocol)


def _report(out_dir, results: list[CaseResult], missing: list[str], config: EvaluationConfig, *,
            figures: bool, protocol: str = DEFAULT_PROTOCOL) -> EvaluationRun:
    per_case, lesions = to_dataframe(results), lesions_dataframe(results)
    summary = summarize_protocol(protocol, per_case, lesions)
    summary["missing_predictions"] = missing
    if protocol == DEFAULT_PROTOCOL:
        summary["config"] = {
            "nsd_tolerance_mm": config.nsd_tolerance_mm,
            "iou_threshold": config.iou_threshold,
            "connectivity": config.connectivity,
        }
    else:
        from medseg.evaluation.lits2017 import CONVENTIONS

        summary["config"] = dict(CONVENTIONS)
        figures = False  # the box and volume plots are drawn from medseg's columns
    files = write_report(out_dir, per_case, _json_safe(summary), lesions=lesions, figures=figures)
    return EvaluationRun(results=results, summary=summary, files=files, missing_predictions=missing)
