"""The result of evaluating one case, shared by every protocol: :class:`CaseResult` and the regions.

Its own module so that the protocols (:mod:`~medseg.evaluation.case`, :mod:`~medseg.evaluation.lits2017`),
the cohort aggregates and the protocol switch (:mod:`~medseg.evaluation.protocols`) all build on it without
importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medseg.evaluation.detection import LesionScores
from medseg.labels import REGION_LABELS

__all__ = ["REGIONS", "CaseResult"]

#: Regions evaluated per case, in report order (:data:`medseg.labels.REGION_LABELS`).
REGIONS = tuple(REGION_LABELS)


@dataclass
class CaseResult:
    """The evaluation of one case: a flat ``row`` (``per_case.csv``) and per-reference-lesion rows."""

    case: str
    row: dict[str, float | int | str]
    lesions: list[dict] = field(default_factory=list)
    detections: LesionScores | None = None
