"""Cohort tables a paper can use: ``volumes.csv`` (one row per case) and ``lesions.csv`` (one row per lesion).

Both are built from :func:`medseg.evaluation.volumes.measure_volumes` reports. Every table starts with the
``case`` column, holds one value per column (the centroid as ``centroid_x_mm``, ``centroid_y_mm``,
``centroid_z_mm``, scanner RAS+ mm) and rounds to a precision that means something for CT: volumes to
0.001 mL (1 mm^3), lengths and coordinates to 0.01 mm, percentages to 0.001 %, HU to 0.1.

``volumes.csv`` columns: ``case, liver_ml, liver_parenchyma_ml, tumor_ml, tumor_burden_percent,
lesion_count, largest_lesion_ml, largest_lesion_axial_diameter_mm, largest_lesion_short_axis_mm,
largest_lesion_max_diameter_mm, liver_truncated, tumor_truncated, warnings`` (``warnings`` joined by
``"; "``; the largest-lesion columns are empty for a tumor-free case).

``lesions.csv`` columns: ``case, lesion, volume_ml, axial_diameter_mm, short_axis_mm, max_diameter_mm,
centroid_x_mm, centroid_y_mm, centroid_z_mm, truncated`` and, when the scan was measured, ``hu_mean,
hu_std``. ``axial_diameter_mm`` and ``short_axis_mm`` are the RECIST long and short axes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from medseg.utils.atomic import atomic_write_csv

__all__ = ["LESION_COLUMNS", "VOLUME_COLUMNS", "lesion_rows", "lesions_table", "volume_row", "volumes_table",
           "write_table"]

VOLUME_COLUMNS = (
    "case", "liver_ml", "liver_parenchyma_ml", "tumor_ml", "tumor_burden_percent", "lesion_count",
    "largest_lesion_ml", "largest_lesion_axial_diameter_mm", "largest_lesion_short_axis_mm",
    "largest_lesion_max_diameter_mm", "liver_truncated", "tumor_truncated", "folds", "fold_tumor_sd_ml",
    "fold_dice_tumor", "fold_dice_liver", "warnings",
)
LESION_COLUMNS = (
    "case", "lesion", "volume_ml", "axial_diameter_mm", "short_axis_mm", "max_diameter_mm",
    "centroid_x_mm", "centroid_y_mm", "centroid_z_mm", "truncated", "hu_mean", "hu_std",
)
_DECIMALS = {"_ml": 3, "_mm": 2, "_percent": 3, "hu_mean": 1, "hu_std": 1}


def _round(column: str, value):
    if not isinstance(value, float):
        return value
    for suffix, digits in _DECIMALS.items():
        if column.endswith(suffix):
            return round(value, digits)
    return value


def _rounded(row: Mapping) -> dict:
    return {k: _round(k, v) for k, v in row.items()}


def volume_row(case: str, report: Mapping, warnings: Sequence[str] = ()) -> dict:
    """The ``volumes.csv`` row of one case's volumes report (lesions largest first, as the report lists)."""
    largest = report["lesions"][0] if report.get("lesions") else {}
    row = {
        "case": case,
        **{k: report.get(k) for k in ("liver_ml", "liver_parenchyma_ml", "tumor_ml", "tumor_burden_percent",
                                      "lesion_count")},
        "largest_lesion_ml": largest.get("volume_ml"),
        "largest_lesion_axial_diameter_mm": largest.get("axial_diameter_mm"),
        "largest_lesion_short_axis_mm": largest.get("short_axis_mm"),
        "largest_lesion_max_diameter_mm": largest.get("max_diameter_mm"),
        "liver_truncated": report.get("liver_truncated"),
        "tumor_truncated": report.get("tumor_truncated"),
        **_agreement(report.get("uncertainty") or {}),
        "warnings": "; ".join(warnings),
    }
    return _rounded(row)


def _agreement(uncertainty: Mapping) -> dict:
    """A fold ensemble's agreement on the case (empty for one model): sort by ``fold_dice_tumor`` (lowest
    first) or ``fold_tumor_sd_ml`` (largest first) to review the cases the folds disagree on."""
    return {"folds": uncertainty.get("folds"), "fold_tumor_sd_ml": uncertainty.get("tumor_volume_sd_ml"),
            "fold_dice_tumor": uncertainty.get("fold_dice_tumor"),
            "fold_dice_liver": uncertainty.get("fold_dice_liver")}  # fmt: skip


def lesion_rows(case: str, lesions: Iterable[Mapping]) -> list[dict]:
    """``lesions.csv`` rows of one case: the case id first, the centroid as three columns."""
    rows = []
    for lesion in lesions:
        row = {"case": case, **{k: v for k, v in lesion.items() if k != "centroid_mm"}}
        x, y, z = (float(c) for c in lesion["centroid_mm"])
        row.update(centroid_x_mm=x, centroid_y_mm=y, centroid_z_mm=z)
        rows.append(_rounded({k: row[k] for k in LESION_COLUMNS if k in row}))
    return rows


def volumes_table(rows: Iterable[Mapping]) -> pd.DataFrame:
    """``volumes.csv`` as a DataFrame in :data:`VOLUME_COLUMNS` order (one row per case)."""
    return pd.DataFrame(list(rows), columns=list(VOLUME_COLUMNS))


def lesions_table(rows: Iterable[Mapping]) -> pd.DataFrame:
    """``lesions.csv`` as a DataFrame in :data:`LESION_COLUMNS` order, every column always present (so a
    cohort without lesions has the same header); ``hu_mean``/``hu_std`` are empty when no scan was given."""
    return pd.DataFrame(list(rows), columns=list(LESION_COLUMNS))


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``frame`` as CSV atomically (no index; non-UTF-8 file names kept as their bytes)."""
    return atomic_write_csv(path, frame)
