"""`medseg predict --runtime`: OpenVINO file to file, its conversion logged once, recorded in run.json."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from medseg.cli import main
from medseg.data import make_phantom, write_phantom_case
from medseg.io import read_volume

pytestmark = pytest.mark.openvino


def test_predict_with_openvino_records_the_runtime_and_converts_once(trained_run, tmp_path, caplog, capsys):
    import openvino

    write_phantom_case(make_phantom(size="tiny", seed=3, index=1), tmp_path / "scans")
    cache = tmp_path / "ov-cache"
    labels = {}
    for runtime in ("openvino", "openvino", "torch"):
        out = tmp_path / f"pred-{runtime}-{len(labels)}"
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="medseg.inference"):
            code = main(["predict", "--model", str(trained_run), str(tmp_path / "scans"), "--out", str(out),
                         "--device", "cpu", "--runtime", runtime, "--precision", "float32", "--cache-dir", str(cache),
                         "--no-preview"])  # fmt: skip
        assert code == 0, capsys.readouterr().err
        run = json.loads((out / "run.json").read_text())
        assert run["settings"]["inference"]["runtime"] == runtime
        assert run["settings"]["compute"]["runtime"] == runtime
        assert run["settings"]["compute"]["precision"] == "float32"
        assert run["settings"]["compute"]["openvino"] == (openvino.get_version() if runtime == "openvino" else None)
        converting = "converting the network to OpenVINO" in caplog.text
        assert converting == (runtime == "openvino" and not labels)  # the first run converts, the second reads
        labels[len(labels)] = read_volume(out / "1_seg.nii.gz").array
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 1
    assert np.mean(labels[0] == labels[2]) >= 0.9999  # OpenVINO float32 and PyTorch agree file to file
