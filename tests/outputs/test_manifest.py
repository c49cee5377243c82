"""The run manifest: keys, atomic updates, final status."""

from __future__ import annotations

import hashlib
import json
import math

import pytest

from medseg.outputs.manifest import MANIFEST_NAME, RunManifest, file_sha256

KEYS = {"manifest_version", "command", "status", "argv", "medseg_version", "python", "versions", "host", "pid",
        "device", "checkpoints", "pipeline", "settings", "started", "updated", "finished", "cases"}


def test_start_cases_finish(tmp_path):
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights" * 1000)
    manifest = RunManifest.start(tmp_path / "out", command="predict", settings={"tta": False, "nan": math.nan},
                                 checkpoints=[checkpoint], device="cpu", argv=["medseg", "predict"])
    data = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    assert set(data) == KEYS and data["status"] == "running" and data["finished"] is None
    assert data["checkpoints"] == [{"path": str(checkpoint.resolve()),
                                    "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest()}]
    assert data["settings"] == {"tta": False, "nan": None}  # standard JSON
    assert data["versions"]["torch"] and data["versions"]["monai"]
    manifest.add_case({"case_id": "1", "input": "a.nii.gz", "status": "failed"})
    manifest.add_case({"case_id": "1", "input": "a.nii.gz", "status": "ok"})  # a re-run replaces it
    manifest.add_case({"case_id": "2", "input": "b.nii.gz", "status": "ok"})
    data = json.loads(manifest.path.read_text())
    assert [(c["case_id"], c["status"]) for c in data["cases"]] == [("1", "ok"), ("2", "ok")]
    manifest.finish("interrupted")
    data = json.loads(manifest.path.read_text())
    assert data["status"] == "interrupted" and data["finished"] >= data["started"]
    assert not [p for p in manifest.path.parent.iterdir() if ".tmp" in p.name]
    with pytest.raises(ValueError, match="status"):
        manifest.finish("done")


def test_file_sha256_in_chunks(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 5000)
    assert file_sha256(path, chunk_bytes=1000) == hashlib.sha256(path.read_bytes()).hexdigest()
