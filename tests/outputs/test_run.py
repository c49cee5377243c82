"""A notebook reproduces `medseg predict`: predict_outputs + predict_batch write the CLI's folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medseg.cli import main
from medseg.data import make_phantom, write_phantom_case
from medseg.inference import InferenceSettings, Predictor, collect_inputs, predict_batch
from medseg.io import read_volume
from medseg.outputs import OutputSettings, file_sha256, models_sha256, predict_outputs

#: run.json keys that differ between two runs by nature (time, process, command line, machine load).
_VOLATILE = ("argv", "pid", "started", "updated", "finished")


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    root = tmp_path_factory.mktemp("scans")
    write_phantom_case(make_phantom(size="tiny", seed=3, index=1), root)
    return root


def _stable(run: dict) -> dict:
    out = {k: v for k, v in run.items() if k not in _VOLATILE}
    out["cases"] = [{k: v for k, v in c.items() if k not in ("seconds", "timings_s", "outputs")}
                    for c in run["cases"]]
    return out


def test_the_api_writes_the_folder_the_cli_writes(untrained_run, scans, tmp_path):
    cli_out, api_out = tmp_path / "cli", tmp_path / "api"
    assert main(["predict", "--model", str(untrained_run), str(scans), "--out", str(cli_out), "--device", "cpu",
                 "--no-progress"]) == 0
    predictor = Predictor.from_run(untrained_run, device="cpu", settings=InferenceSettings())
    writer = predict_outputs(api_out, predictor, OutputSettings(), model=untrained_run)
    inputs, _ = collect_inputs([scans])
    summary = predict_batch(predictor, inputs, api_out, writer=writer, progress=False)
    writer.manifest.finish("complete", counts=summary.counts())

    names = sorted(p.name for p in cli_out.iterdir() if not p.name.startswith("."))
    assert names == sorted(p.name for p in api_out.iterdir() if not p.name.startswith("."))
    assert names == ["1_preview.png", "1_seg.nii.gz", "1_volumes.json", "lesions.csv", "run.json", "volumes.csv"]
    np.testing.assert_array_equal(*(read_volume(o / "1_seg.nii.gz").array for o in (cli_out, api_out)))
    assert json.loads((cli_out / "1_volumes.json").read_text()) == json.loads((api_out / "1_volumes.json").read_text())
    for name in ("volumes.csv", "lesions.csv"):
        assert (cli_out / name).read_text() == (api_out / name).read_text()
    cli_run, api_run = (json.loads((o / "run.json").read_text()) for o in (cli_out, api_out))
    assert _stable(cli_run) == _stable(api_run)
    sha = file_sha256(untrained_run / "best.pt")
    assert api_run["checkpoints"] == [{"path": str((untrained_run / "best.pt").resolve()), "sha256": sha}]
    volumes = json.loads((api_out / "1_volumes.json").read_text())
    assert volumes["model"]["sha256"] == sha and volumes["model"]["name"] == "best.pt"


def test_models_sha256_of_an_ensemble_hashes_the_folds_hashes(tmp_path):
    import hashlib

    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"fold 0")
    b.write_bytes(b"fold 1")
    assert models_sha256([a]) == hashlib.sha256(b"fold 0").hexdigest()
    joined = f"{hashlib.sha256(b'fold 0').hexdigest()},{hashlib.sha256(b'fold 1').hexdigest()}"
    assert models_sha256([a, b]) == hashlib.sha256(joined.encode()).hexdigest()


def test_output_settings_can_leave_out_the_probability_maps(untrained_run, scans, tmp_path):
    predictor = Predictor.from_run(untrained_run, device="cpu", settings=InferenceSettings(probabilities=True))
    inputs, _ = collect_inputs([scans])
    for probabilities, expected in ((True, {"1_prob_liver.nii.gz", "1_prob_tumor.nii.gz"}), (False, set())):
        out = tmp_path / str(probabilities)
        writer = predict_outputs(out, predictor, OutputSettings(preview=False, probabilities=probabilities),
                                 model=untrained_run)
        predict_batch(predictor, inputs, out, writer=writer, progress=False)
        assert {p.name for p in out.glob("1_prob_*")} == expected
