"""Evaluation protocols: which conventions score a run (``medseg evaluate --protocol``).

* ``medseg`` (default): :func:`medseg.evaluation.case.evaluate_case` and
  :func:`medseg.evaluation.cohort.summarize`: face-neighbour surfaces, 26-connected lesions counted per
  reference lesion, NaN for undefined values, HD95 and NSD, tumor burden in percent;
* ``lits2017``: the official LiTS 2017 scorer's conventions, names and units, its bugs fixed
  (:mod:`medseg.evaluation.lits2017`).

``docs/metrics.md`` lists, metric by metric, where the two differ (and where MONAI, medpy and DeepMind's
``surface-distance`` differ from both).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is only needed by the protocols' own modules; keeps the CLI's import light
    import pandas as pd

__all__ = ["DEFAULT_PROTOCOL", "PROTOCOLS", "check_protocol", "summarize_protocol"]

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
