"""load_results: a predict or evaluate output folder as pandas tables, values equal to independent counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from medseg.data import make_phantom
from medseg.data.naming import prediction_filename
from medseg.errors import DataError
from medseg.evaluation import evaluate_folders, load_results, volumes_report
from medseg.evaluation.tables import lesion_rows, lesions_table, volume_row, volumes_table, write_table
from medseg.io import write_volume


@pytest.fixture(scope="module")
def phantoms():
    return [make_phantom(size="tiny", seed=0, index=i) for i in (0, 3)]  # both with lesions


def _write_prediction_folder(folder, phantoms, *, tables: bool):
    folder.mkdir()
    rows, lesions = [], []
    for i, case in enumerate(phantoms):
        report = volumes_report(case.label, case.image)
        (folder / f"00{i}_volumes.json").write_text(json.dumps(report))
        rows.append(volume_row(f"00{i}", report))
        lesions += lesion_rows(f"00{i}", report["lesions"])
    if tables:
        write_table(volumes_table(rows), folder / "volumes.csv")
        write_table(lesions_table(lesions), folder / "lesions.csv")


@pytest.mark.parametrize("tables", [True, False], ids=["volumes.csv", "json-only"])
def test_prediction_folder_volumes_equal_voxel_counts(tmp_path, phantoms, tables):
    _write_prediction_folder(tmp_path / "pred", phantoms, tables=tables)
    results = load_results(tmp_path / "pred")
    assert results.kind == "predictions"
    assert list(results.cases.index) == ["000", "001"]  # ids stay strings with their zeros
    for i, case in enumerate(phantoms):
        voxel_ml = float(np.prod(case.label.spacing_mm)) / 1000.0
        row = results.cases.loc[f"00{i}"]
        assert row["liver_ml"] == pytest.approx(np.count_nonzero(case.label.array > 0) * voxel_ml, abs=1e-3)
        assert row["tumor_ml"] == pytest.approx(np.count_nonzero(case.label.array == 2) * voxel_ml, abs=1e-3)
        _, n = ndimage.label(case.label.array == 2, structure=np.ones((3, 3, 3)))
        assert row["lesion_count"] == n
        assert (results.lesions["case"] == f"00{i}").sum() == n
    assert results.lesions.columns[0] == "case"
    assert results.lesions["volume_ml"].sum() == pytest.approx(results.cases["tumor_ml"].sum(), abs=1e-2)


def test_evaluation_folder_gives_per_case_metrics_and_summary(tmp_path, phantoms):
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    for i, case in enumerate(phantoms):
        write_volume(case.image, ref_dir / f"volume-{i}.nii.gz")
        write_volume(case.label, ref_dir / f"segmentation-{i}.nii.gz", label=True)
        pred = case.label.array.copy()
        if i == 1:
            pred[pred == 2] = 1  # every lesion missed: tumor Dice 0
        write_volume(case.label.with_array(pred), pred_dir / prediction_filename(str(i)), label=True)
    evaluate_folders(pred_dir, ref_dir, tmp_path / "eval", workers=1, progress=False, figures=False)
    results = load_results(tmp_path / "eval")
    assert results.kind == "evaluation"
    assert results.cases.loc["0", "liver_dice"] == pytest.approx(1.0)
    assert results.cases.loc["1", "tumor_dice"] == pytest.approx(0.0)
    assert results.cases.loc["1", "liver_dice"] == pytest.approx(1.0)  # tumor relabelled liver: liver unchanged
    _, n_ref = ndimage.label(phantoms[1].label.array == 2, structure=np.ones((3, 3, 3)))
    assert results.cases.loc["1", "lesions_fn"] == n_ref and results.cases.loc["1", "lesions_tp"] == 0
    assert results.summary["status"] == "complete"
    assert results.lesions.columns[0] == "case"


def test_not_an_output_folder(tmp_path):
    with pytest.raises(DataError, match="not a medseg output folder"):
        load_results(tmp_path)
    with pytest.raises(DataError, match="no such output folder"):
        load_results(tmp_path / "missing")
