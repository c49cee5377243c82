"""write_report: the files of an evaluation, summary.json last; stale files of an earlier run removed."""

import json

import numpy as np
import pandas as pd
import pytest

from medseg.evaluation.report import REPORT_FILES, mark_incomplete, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def _per_case():
    return pd.DataFrame({
        "case": ["a", "b", "c"],
        "liver_dice": [0.9, 0.95, np.nan], "tumor_dice": [0.5, 0.7, 0.0],
        "liver_hd95_mm": [4.0, 3.0, np.nan], "tumor_hd95_mm": [6.0, np.nan, 8.0],
        "liver_pred_volume_ml": [1500.0, 1600.0, 1400.0], "liver_ref_volume_ml": [1450.0, 1650.0, 1400.0],
        "tumor_pred_volume_ml": [10.0, 0.0, 5.0], "tumor_ref_volume_ml": [12.0, 1.0, 4.0],
    })


def test_files_summary_and_stale_files(tmp_path):
    lesions = pd.DataFrame({"case": ["a"], "lesion": [1], "volume_ml": [1.5]})
    (tmp_path / "boxplots.png").write_bytes(PNG)  # from an earlier run with figures, which its summary lists
    earlier = {"status": "complete", "files": ["boxplots.png", "summary.json"]}
    (tmp_path / "summary.json").write_text(json.dumps(earlier))
    written = write_report(tmp_path, _per_case(), {"cases": 3}, lesions=lesions, figures=False)
    assert set(written) == {"per_case", "lesions", "summary"}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == {"status": "complete", "cases": 3, "files": ["lesions.csv", "per_case.csv", "summary.json"]}
    assert not (tmp_path / "boxplots.png").exists()  # would mislead next to this run's tables
    back = pd.read_csv(tmp_path / "per_case.csv")
    assert list(back["case"]) == ["a", "b", "c"] and back["tumor_ref_volume_ml"].tolist() == [12.0, 1.0, 4.0]
    assert pd.read_csv(tmp_path / "lesions.csv")["volume_ml"].tolist() == [1.5]
    assert REPORT_FILES[-1] == "summary.json"
    write_report(tmp_path, _per_case(), {}, figures=False)  # no lesions this time: the earlier table goes
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["per_case.csv",
                                                                                        "summary.json"]


@pytest.mark.slow
def test_figures(tmp_path):
    written = write_report(tmp_path, _per_case(), {})
    assert {"boxplots", "volumes"} <= set(written)
    assert (tmp_path / "boxplots.png").read_bytes()[:8] == PNG and (tmp_path / "volumes.png").read_bytes()[:8] == PNG
    assert json.loads((tmp_path / "summary.json").read_text())["files"] == ["boxplots.png", "per_case.csv",
                                                                            "volumes.png", "summary.json"]


def test_incomplete_marker(tmp_path):
    mark_incomplete(tmp_path)
    marker = json.loads((tmp_path / "summary.json").read_text())
    assert marker["status"] == "incomplete" and "did not finish" in marker["note"]


def test_files_no_evaluate_wrote_are_neither_removed_nor_overwritten(tmp_path):
    """Issue #29.9: `evaluate --no-figures` deleted figures it never wrote and overwrote a lesions.csv there."""
    from medseg.errors import DataError

    (tmp_path / "volumes.png").write_bytes(PNG)  # the user's own, no summary.json: not evaluate's
    with pytest.raises(DataError, match=r"volumes\.png here not written by medseg evaluate"):
        write_report(tmp_path, _per_case(), {}, figures=False)
    (tmp_path / "volumes.png").unlink()
    (tmp_path / "lesions.csv").write_text("case,lesion\npredict's,1\n")  # medseg predict's cohort table
    with pytest.raises(DataError, match=r"lesions\.csv here not written"):
        mark_incomplete(tmp_path)
    assert (tmp_path / "lesions.csv").read_text() == "case,lesion\npredict's,1\n"
    assert not (tmp_path / "summary.json").exists()
    (tmp_path / "lesions.csv").unlink()
    (tmp_path / "froc.png").write_bytes(PNG)
    (tmp_path / "summary.json").write_text(json.dumps({"status": "complete", "files": ["froc.png", "summary.json"]}))
    mark_incomplete(tmp_path)  # a killed run carries the earlier run's list over
    assert json.loads((tmp_path / "summary.json").read_text())["earlier_files"] == ["froc.png", "summary.json"]
    write_report(tmp_path, _per_case(), {}, figures=False)
    assert not (tmp_path / "froc.png").exists()  # evaluate's own earlier figure: removed
