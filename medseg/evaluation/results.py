"""Load a ``medseg predict`` or ``medseg evaluate`` output folder into pandas tables in one call.

For notebooks and papers::

    from medseg.evaluation import load_results

    predictions = load_results("demo_output/predictions")   # volumes per case, lesions, run manifest
    predictions.cases.sort_values("tumor_ml")
    evaluation = load_results("demo_output/evaluation")     # per-case metrics, lesion matches, summary
    evaluation.cases[["liver_dice", "tumor_dice"]].describe()

Both kinds give one row per case in :attr:`Results.cases` (indexed by the case id, kept as a string so
``"007"`` stays ``"007"``) and one row per lesion in :attr:`Results.lesions` (the case id as the first
column). A prediction folder written before ``volumes.csv`` existed is read from its
``<case>_volumes.json`` files with the same columns (:mod:`medseg.evaluation.tables`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from medseg.errors import DataError

__all__ = ["Results", "load_results"]

_VOLUMES_SUFFIX = "_volumes.json"


@dataclass(frozen=True)
class Results:
    """The tables of one output folder.

    Attributes:
        kind: ``"predictions"`` (``medseg predict``) or ``"evaluation"`` (``medseg evaluate``).
        folder: The folder read.
        cases: One row per case, indexed by ``case`` (str).
        lesions: One row per lesion, ``case`` first (empty with the right columns when there are none).
        summary: ``summary.json`` of an evaluation; ``{}`` for predictions.
        manifest: ``run.json`` when the folder has one, else ``{}``.
    """

    kind: str
    folder: Path
    cases: pd.DataFrame
    lesions: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


def load_results(folder: str | os.PathLike) -> Results:
    """Read the tables of a ``medseg predict`` or ``medseg evaluate`` output folder.

    Raises:
        DataError: ``folder`` is neither (no ``per_case.csv``, ``volumes.csv`` or ``*_volumes.json``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("no such output folder", path=folder)
    manifest = _read_json(folder / "run.json")
    if (folder / "per_case.csv").is_file():
        return Results("evaluation", folder, _read_cases(folder / "per_case.csv"),
                       _read_lesions(folder / "lesions.csv"), _read_json(folder / "summary.json"), manifest)
    if (folder / "volumes.csv").is_file():
        return Results("predictions", folder, _read_cases(folder / "volumes.csv"),
                       _read_lesions(folder / "lesions.csv"), {}, manifest)
    reports = sorted(folder.glob(f"*{_VOLUMES_SUFFIX}"))
    if reports:
        cases, lesions = _tables_from_reports(reports)
        return Results("predictions", folder, cases, lesions, {}, manifest)
    raise DataError("not a medseg output folder (no per_case.csv, volumes.csv or *_volumes.json)", path=folder)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"unreadable JSON ({exc})", path=path) from None


def _read_cases(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"case": str})
    return frame.set_index("case")


def _read_lesions(path: Path) -> pd.DataFrame:
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame(columns=["case"])
    try:
        return pd.read_csv(path, dtype={"case": str})
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=["case"])


def _tables_from_reports(reports: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``volumes.csv`` / ``lesions.csv`` equivalents from per-case ``<case>_volumes.json`` reports."""
    from medseg.evaluation.tables import lesion_rows, lesions_table, volume_row, volumes_table

    rows, lesion_list = [], []
    for path in reports:
        case = path.name[: -len(_VOLUMES_SUFFIX)]
        report = _read_json(path)
        rows.append(volume_row(case, report, report.get("warnings", ())))
        lesion_list += lesion_rows(case, report.get("lesions", []))
    cases = volumes_table(rows)
    cases["case"] = cases["case"].astype(str)
    return cases.set_index("case"), lesions_table(lesion_list)
