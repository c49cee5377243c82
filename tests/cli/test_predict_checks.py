"""``medseg predict`` flags scans unlike the training data (warnings in the case JSON; --strict: failures)."""

from __future__ import annotations

import json

import numpy as np

from medseg.cli import main
from medseg.io import Volume, write_volume

from .conftest import untrained_run  # noqa: F401


def test_predict_warns_and_strict_fails(tiny_case, tmp_path, capsys, caplog, untrained_run):  # noqa: F811
    # the run's plan is 12 mm; this scan is stored at ~2 mm (e.g. a header from another scanner)
    fine = Volume(tiny_case.image.array, tiny_case.image.affine @ np.diag([0.25, 0.25, 0.25, 1.0]))
    scan = write_volume(fine, tmp_path / "fine.nii.gz")
    out = tmp_path / "pred"
    assert main(["predict", str(scan), "--model", str(untrained_run), "--out", str(out), "--device", "cpu",
                 "--no-preview"]) == 0
    warnings = json.loads((out / "fine_volumes.json").read_text())["warnings"]
    assert any(w.startswith("spacing: voxel size 1.99x1.99x2 mm (R, A, S) is far from the model's 12x12x12 mm")
               for w in warnings), warnings
    assert any("fine: spacing: voxel size 1.99x1.99x2 mm" in r.getMessage() for r in caplog.records
               if r.levelname == "WARNING")  # the console warning
    strict = tmp_path / "strict"
    assert main(["predict", str(scan), "--model", str(untrained_run), "--out", str(strict), "--device", "cpu",
                 "--no-preview", "--strict"]) == 2
    failed = [line for line in capsys.readouterr().err.splitlines() if line.strip().startswith("FAILED")]
    assert len(failed) == 1 and f"{scan}: --strict: spacing: voxel size 1.99x1.99x2 mm" in failed[0]
    assert not (strict / "fine_seg.nii.gz").exists()
