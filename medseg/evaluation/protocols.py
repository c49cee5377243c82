"""Evaluation protocols: which conventions score a run (``medseg evaluate --protocol``); the one place
that switches on the protocol, for a case (:func:`score_case`), for the cohort (:func:`summarize_protocol`)
and for what the summary records (:func:`protocol_config`).

* ``medseg`` (default): :func:`medseg.evaluation.case.evaluate_case` and
  :func:`medseg.evaluation.cohort.summarize`: face-neighbour surfaces, 26-connected lesions counted per
  reference lesion, NaN for undefined values, HD95 and NSD, tumor burden in percent;
* ``lits2017``: the official LiTS 2017 scorer's conventions, names and units, its bugs fixed
  (:mod:`medseg.evaluation.lits2017`).

``docs/metrics.md`` lists, metric by metric, where the two differ (and where MONAI, medpy and DeepMind's
``surface-distance`` differ from both).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the protocols' own modules load numpy, pandas, scipy; keeps the CLI's import light
    import numpy as np
    import pandas as pd

    from medseg.evaluation.case import EvaluationConfig
    from medseg.evaluation.result import CaseResult

__all__ = ["DEFAULT_PROTOCOL", "PROTOCOLS", "check_protocol", "protocol_config", "score_case", "summarize_protocol"]

#: Protocol names, the default first.
PROTOCOLS = ("medseg", "lits2017")
DEFAULT_PROTOCOL = PROTOCOLS[0]


def check_protocol(protocol: str) -> str:
    """Return ``protocol`` if it is one of :data:`PROTOCOLS`, else raise ``ValueError`` naming the choices."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    return protocol


def summarize_protocol(protocol: str, per_case: pd.DataFrame, lesions: pd.DataFrame, *,
                       not_scored: tuple[str, ...] = ()) -> dict:
    """Cohort summary of per-case and lesion tables under ``protocol``, with ``"protocol"`` as first key
    (``not_scored``: regions the references do not declare; the ``medseg`` protocol only)."""
    if check_protocol(protocol) == "lits2017":
        from medseg.evaluation.lits2017 import summarize_lits2017

        summary = summarize_lits2017(per_case, lesions)
    else:
        from medseg.evaluation.cohort import summarize

        summary = summarize(per_case, not_scored=not_scored)
    return {"protocol": protocol, **summary}


def score_case(protocol: str, pred: np.ndarray, ref: np.ndarray, *, spacing_mm: Sequence[float], case: str = "",
               config: EvaluationConfig | None = None, tumor_probability: np.ndarray | None = None,
               affine: np.ndarray | None = None) -> CaseResult:
    """One case under ``protocol``: :func:`medseg.evaluation.case.evaluate_case` (``config``,
    ``tumor_probability`` and ``affine``, for exact volumes, apply) or
    :func:`medseg.evaluation.lits2017.evaluate_case_lits2017` (no physical volumes).

    Raises:
        ValueError: An unknown protocol, or a non-default ``config`` for ``lits2017`` (its conventions are fixed).
    """
    from medseg.evaluation.case import EvaluationConfig, evaluate_case

    if check_protocol(protocol) == DEFAULT_PROTOCOL:
        return evaluate_case(pred, ref, spacing_mm=spacing_mm, case=case, config=config,
                             tumor_probability=tumor_probability, affine=affine)
    if config not in (None, EvaluationConfig()):
        raise ValueError(f"config {config!r} does not apply to protocol {protocol!r}: its conventions are fixed")
    from medseg.evaluation.lits2017 import evaluate_case_lits2017

    return evaluate_case_lits2017(pred, ref, spacing_mm=spacing_mm, case=case)


def protocol_config(protocol: str, config: EvaluationConfig) -> dict[str, Any]:
    """``summary.json``'s ``config``: the settings that scored the run (``lits2017``: its fixed conventions)."""
    if check_protocol(protocol) == DEFAULT_PROTOCOL:
        return {"nsd_tolerance_mm": config.nsd_tolerance_mm, "iou_threshold": config.iou_threshold,
                "connectivity": config.connectivity}
    from medseg.evaluation.lits2017 import CONVENTIONS

    return dict(CONVENTIONS)
