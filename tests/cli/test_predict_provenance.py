"""What the model was trained on, on every output of ``medseg predict``; a phantom-only model warns once."""

from __future__ import annotations

import json
import logging

import highdicom as hd
import yaml

from medseg.cli import main
from medseg.data import make_phantom
from medseg.io import write_dicom_series
from medseg.runs import load_checkpoint
from medseg.runs.provenance import PHANTOM_WARNING


def test_a_trained_run_records_its_data(fold_runs, tiny_dataset):
    run = fold_runs / "fold0"
    folds = json.loads((run / "folds.json").read_text())
    expected = {"name": tiny_dataset.name, "root": str(tiny_dataset.resolve()),
                "n_cases": len(folds["folds"][0]["train"]), "phantom": True, "framework": "medseg", "trainer": None}
    assert load_checkpoint(run / "last.pt")["training_data"] == expected
    assert json.loads((run / "data.json").read_text())["training_data"] == expected
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["root"] == str(tiny_dataset.resolve())  # not null: the data set it trained on


def test_every_output_says_what_the_model_was_trained_on(fold_runs, tiny_dataset, tmp_path, caplog, monkeypatch):
    series = tmp_path / "patient"
    write_dicom_series(make_phantom(size="tiny", seed=4, index=1).image, series)
    captions = []
    import medseg.outputs.preview

    real = medseg.outputs.preview.write_preview
    monkeypatch.setattr(medseg.outputs.preview, "write_preview",
                        lambda *a, caption="", **k: captions.append(caption) or real(*a, caption=caption, **k))
    out = tmp_path / "pred"
    with caplog.at_level(logging.WARNING):
        assert main(["predict", "--model", str(fold_runs), str(series), "--out", str(out), "--device", "cpu",
                     "--no-progress"]) == 0  # fmt: skip
    assert [r.getMessage() for r in caplog.records].count(f"{fold_runs}: {PHANTOM_WARNING}") == 1
    described = f"{tiny_dataset.name} (2 cases, synthetic phantom)"
    run = json.loads((out / "run.json").read_text())
    assert [t["phantom"] for t in run["pipeline"]["training_data"]] == [True, True]
    assert run["pipeline"]["warnings"] == [PHANTOM_WARNING]
    assert run["pipeline"]["postprocessing"]["keep_largest_liver"] is True  # what was applied, not null
    volumes = json.loads((out / "patient_volumes.json").read_text())
    assert volumes["model"]["phantom_only"] is True and volumes["model"]["trained_on"] == described
    assert len(volumes["model"]["training_data"]) == 2
    assert captions and captions[0].endswith(f"trained on {described}")
    seg = hd.seg.segread(out / "patient_seg.dcm")
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert f"training_data={described}" in algorithm.AlgorithmParameters
    assert algorithm.AlgorithmName == "medseg" and algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning
