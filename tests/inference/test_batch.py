"""The batch loop behind ``medseg predict``: inputs, shards, outcomes, files written (a stand-in predictor)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from medseg.errors import DataError
from medseg.inference.batch import (
    BatchSummary,
    CaseOutcome,
    collect_inputs,
    predict_batch,
    shard_from_env,
)
from medseg.io import Volume, read_volume, write_volume
from medseg.utils.atomic import atomic_write_json

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


class _Thresholder:
    """Labels 1 where the scan is above 0 HU; fails on scans whose first voxel is -1 (a bad scan)."""

    def predict(self, volume):
        if volume.array.flat[0] == -1:
            raise RuntimeError("CUDA out of memory\nsecond line of the error")
        labels = (np.asarray(volume.array) > 0).astype(np.uint8)
        return volume.with_array(labels, kind="label"), {"mode": "stand-in"}


class _JsonWriter:
    """A CaseWriter: ``report(labels, scan)`` as ``<case>_volumes.json``, every outcome's status recorded."""

    def __init__(self, out, report):
        self.out, self.report, self.statuses = out, report, []

    def write_case(self, case_id, source, scan, labels, stats):
        atomic_write_json(self.out / f"{case_id}_volumes.json",
                          {"case_id": case_id, "input": str(source), **self.report(labels, scan)})
        return SimpleNamespace(write_label_map=True)

    def case_done(self, outcome):
        self.statuses.append((outcome.case_id, outcome.status))


@pytest.fixture
def scans(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for name, first in (("a", 0), ("b", 0), ("bad", -1)):
        array = np.full((4, 5, 6), -100, np.int16)
        array[1:3, 1:4, 2:5] = 40
        array.flat[0] = first
        write_volume(Volume(array, AFFINE), folder / f"{name}.nii.gz")
    return folder


def test_summary_counts_and_format():
    summary = BatchSummary([CaseOutcome("1", "x/1.nii", "ok"), CaseOutcome("2", "x/2.nii", "skipped"),
                            CaseOutcome("3", "x/3.nii", "failed", reason="x/3.nii: not 3D")])
    assert summary.counts() == {"ok": 1, "skipped": 1, "failed": 1}
    assert [o.case_id for o in summary.failed] == ["3"]
    assert summary.format() == "1 predicted, 1 skipped (output exists), 1 failed\n  FAILED 3 (x/3.nii): x/3.nii: not 3D"


def test_collect_inputs_reports_bad_paths_and_repeated_ids(scans, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.nii.gz").write_bytes((scans / "a.nii.gz").read_bytes())  # case id "a" again
    inputs, failures = collect_inputs([scans, other, tmp_path / "missing.nii.gz"])
    assert [cid for cid, _ in inputs] == ["a", "b", "bad"]
    assert sorted(f.case_id for f in failures) == ["a", "missing"]
    repeated = next(f for f in failures if f.case_id == "a")
    assert repeated.status == "failed" and "case id 'a' already used by" in repeated.reason


def test_shard_from_env():
    assert shard_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)
    assert shard_from_env({}) == (0, 1, 0)
    with pytest.raises(DataError, match="invalid RANK/WORLD_SIZE/LOCAL_RANK"):
        shard_from_env({"RANK": "one"})


def test_batch_writes_labels_and_the_writers_files_and_survives_a_failure(scans, tmp_path):
    inputs, _ = collect_inputs([scans])
    out = tmp_path / "pred"

    def report(labels, scan):
        return {"voxels": int(np.count_nonzero(labels.array)), "shape": list(scan.shape)}

    writer = _JsonWriter(out, report)
    summary = predict_batch(_Thresholder(), inputs, out, writer=writer)
    assert writer.statuses == [("a", "ok"), ("b", "ok"), ("bad", "failed")]
    assert summary.counts() == {"ok": 2, "skipped": 0, "failed": 1}
    failed = summary.failed[0]
    assert failed.case_id == "bad" and failed.reason == "RuntimeError: CUDA out of memory"  # one line
    for case_id in ("a", "b"):
        labels = read_volume(out / f"{case_id}_seg.nii.gz")
        assert labels.array.dtype == np.uint8 and int(labels.array.sum()) == 2 * 3 * 3
        np.testing.assert_allclose(labels.affine, AFFINE)
        written = json.loads((out / f"{case_id}_volumes.json").read_text())
        assert written == {"case_id": case_id, "input": str(scans / f"{case_id}.nii.gz"), "voxels": 18,
                           "shape": [4, 5, 6]}
    assert not (out / "bad_seg.nii.gz").exists() and not (out / "bad_volumes.json").exists()
    again = predict_batch(_Thresholder(), inputs, out, skip_existing=True)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped", "failed"]


def test_no_writer_only_label_maps(scans, tmp_path):
    inputs, _ = collect_inputs([scans / "a.nii.gz"])
    predict_batch(_Thresholder(), inputs, tmp_path / "pred")
    assert sorted(p.name for p in (tmp_path / "pred").iterdir() if not p.name.startswith(".")) == ["a_seg.nii.gz"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Two NIfTI phantom scans (LPS and LPI storage)."""
    from medseg.data import make_phantom, write_phantom_case

    root = tmp_path_factory.mktemp("cohort")
    for i in (1, 2):
        write_phantom_case(make_phantom(size="tiny", seed=3, index=i), root / "nifti")
    return root, None


def test_interrupted_batch_leaves_only_complete_files(untrained_run, cohort, tmp_path):
    from medseg.evaluation import volumes_report
    from medseg.inference import Predictor, predict_batch

    root, _ = cohort
    predictor = Predictor.from_run(untrained_run, device="cpu")
    real_predict = predictor.predict
    calls = []

    class Interrupting:
        def predict(self, volume):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return real_predict(volume)

    out = tmp_path / "pred"
    inputs, _ = collect_inputs([root / "nifti"])
    with pytest.raises(KeyboardInterrupt):
        predict_batch(Interrupting(), inputs, out, writer=_JsonWriter(out, lambda labels, scan: volumes_report(
            labels, scan)))
    assert sorted(p.name for p in out.iterdir()) == ["1_seg.nii.gz", "1_volumes.json"]
    assert read_volume(out / "1_seg.nii.gz").shape == read_volume(inputs[0][1]).shape
