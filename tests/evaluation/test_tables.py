"""Cohort tables: columns, one value per column, sensible precision."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medseg.evaluation.tables import (
    LESION_COLUMNS,
    VOLUME_COLUMNS,
    lesion_rows,
    lesions_table,
    volume_row,
    volumes_table,
    write_table,
)
from medseg.evaluation.volumes import measure_volumes


@pytest.fixture()
def report():
    labels = np.zeros((20, 20, 10), np.uint8)
    labels[2:18, 2:18, 1:9] = 1
    labels[4:9, 4:8, 3:6] = 2  # 5 x 4 x 3 voxels
    labels[12:14, 12:14, 4:5] = 2  # 2 x 2 x 1
    affine = np.diag([0.9, 0.9, 3.0, 1.0])
    return measure_volumes(labels, spacing_mm=(0.9, 0.9, 3.0), affine=affine)


def test_volume_row_columns_and_precision(report, tmp_path):
    row = volume_row("case7", report, ["modality is MR", "odd spacing"])
    assert tuple(row) == VOLUME_COLUMNS
    voxel_ml = 0.9 * 0.9 * 3.0 / 1000
    assert row["tumor_ml"] == pytest.approx(round(64 * voxel_ml, 3))
    assert row["lesion_count"] == 2 and row["largest_lesion_ml"] == round(60 * voxel_ml, 3)
    assert row["largest_lesion_axial_diameter_mm"] == round(report["lesions"][0]["axial_diameter_mm"], 2)
    assert row["warnings"] == "modality is MR; odd spacing"
    path = write_table(volumes_table([row, volume_row("free", {**report, "lesions": [], "lesion_count": 0})]),
                       tmp_path / "volumes.csv")
    text = path.read_text()
    assert text.splitlines()[0] == ",".join(VOLUME_COLUMNS)
    assert "0.8099999" not in text and "00000001" not in text
    frame = pd.read_csv(path)
    assert frame["case"].tolist() == ["case7", "free"]
    assert np.isnan(frame.loc[1, "largest_lesion_ml"])  # tumor-free: empty, not 0


def test_lesion_rows_start_with_case_and_split_the_centroid(report):
    rows = lesion_rows("case7", report["lesions"])
    assert [tuple(r)[:2] for r in rows] == [("case", "lesion")] * 2
    frame = lesions_table(rows)
    assert tuple(frame.columns) == tuple(LESION_COLUMNS)  # every column, also without a scan (issue #28)
    assert frame["hu_mean"].isna().all()  # no scan given: HU not measured, empty cells
    assert tuple(lesions_table([]).columns) == tuple(LESION_COLUMNS)  # a cohort without lesions: same header
    first = report["lesions"][0]
    assert frame.loc[0, ["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].tolist() == [
        round(c, 2) for c in first["centroid_mm"]]
    # centroid of voxels 4..8 x 4..7 x 3..5 at 0.9/0.9/3 mm: analytic
    assert frame.loc[0, "centroid_x_mm"] == pytest.approx(6 * 0.9) and frame.loc[0, "centroid_z_mm"] == 12.0
    for column in ("volume_ml", "axial_diameter_mm", "short_axis_mm", "max_diameter_mm"):
        assert frame.loc[0, column] == round(first[column], 3 if column.endswith("_ml") else 2)
    # a 5 x 4 voxel rectangle: its longest axial diameter runs corner to corner (face centres, mm)
    assert frame.loc[0, "axial_diameter_mm"] == pytest.approx(0.9 * np.hypot(5, 3), abs=0.01)
