"""The preprocessed cache: contents, memory mapping, re-use and invalidation."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from medseg.data import make_phantom
from medseg.errors import DataError
from medseg.io import read_volume
from medseg.preprocessing.dataset import load_preprocessed, preprocess_dataset, read_cache_index
from medseg.preprocessing.plan import PreprocessingPlan
from medseg.preprocessing.transform import preprocess_image, preprocess_label

PLAN = PreprocessingPlan.window((8.0, 8.0, 9.0))


def _cases(root):
    return [(str(i), root / f"volume-{i}.nii.gz", root / f"segmentation-{i}.nii.gz") for i in range(4)]


def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.name != "dataset.json"}


@pytest.fixture()
def dataset_copy(tiny_dataset, tmp_path):
    """A private copy of the tiny data set, so tests may touch its files."""
    return shutil.copytree(tiny_dataset, tmp_path / "raw")


def test_cache_contents_match_direct_preprocessing(dataset_copy, tmp_path):
    out = preprocess_dataset(_cases(dataset_copy), tmp_path / "cache", PLAN, workers=1, progress=False)
    index = read_cache_index(out)
    assert index["case_ids"] == ["0", "1", "2", "3"] and index["plan"] == PLAN.to_dict()
    for cid in index["case_ids"]:
        case = load_preprocessed(out, cid)
        assert isinstance(case.image, np.memmap) and case.image.dtype == np.float32 and case.label.dtype == np.uint8
        image = read_volume(dataset_copy / f"volume-{cid}.nii.gz")
        expected, record = preprocess_image(image, PLAN)
        np.testing.assert_array_equal(case.image, expected)
        labels = preprocess_label(read_volume(dataset_copy / f"segmentation-{cid}.nii.gz"), record)
        np.testing.assert_array_equal(case.label, labels)
        assert case.record.to_dict() == record.to_dict()
        assert case.spacing_mm == pytest.approx(record.spacing_after_mm)
        # every stored location holds its class; every class present has locations and a voxel count
        for cls, coords in case.class_locations.items():
            assert len(coords) == min(10_000, np.count_nonzero(labels == cls))
            assert np.all(labels[tuple(coords.T)] == cls)
        assert set(case.class_locations) == set(np.unique(labels)) - {0}
        assert case.meta["class_voxels"] == {str(c): int(n) for c, n in enumerate(np.bincount(labels.ravel())) if n}
        assert case.meta["image_min"] == pytest.approx(float(expected.min()))


def test_cache_reused_then_invalidated(dataset_copy, tmp_path):
    cache = tmp_path / "cache"
    preprocess_dataset(_cases(dataset_copy), cache, PLAN, workers=1, progress=False)
    first = _mtimes(cache)
    key = read_cache_index(cache)["cache_key"]
    preprocess_dataset(_cases(dataset_copy), cache, PLAN, workers=1, progress=False)
    assert _mtimes(cache) == first and read_cache_index(cache)["cache_key"] == key

    # touching one input recomputes that case only
    label = dataset_copy / "segmentation-2.nii.gz"
    os.utime(label, ns=(label.stat().st_atime_ns, label.stat().st_mtime_ns + 10**9))
    preprocess_dataset(_cases(dataset_copy), cache, PLAN, workers=1, progress=False)
    changed = {name for name, t in _mtimes(cache).items() if first[name] != t}
    assert changed == {"2.image.npy", "2.label.npy", "2.json"}
    assert read_cache_index(cache)["cache_key"] != key

    # a new plan recomputes everything
    second = _mtimes(cache)
    new_plan = PreprocessingPlan.window((6.0, 6.0, 9.0))
    preprocess_dataset(_cases(dataset_copy), cache, new_plan, workers=1, progress=False)
    assert all(second[name] != t for name, t in _mtimes(cache).items())
    assert read_cache_index(cache)["plan"] == new_plan.to_dict()
    assert load_preprocessed(cache, "0").spacing_mm == pytest.approx((6.0, 6.0, 9.0), rel=0.1)


def test_in_memory_cases_and_missing_label(tmp_path):
    a, b = make_phantom(size="tiny", seed=5, index=0), make_phantom(size="tiny", seed=5, index=1)
    out = preprocess_dataset([a, ("b", b.image, None)], tmp_path / "c", PLAN, workers=1, progress=False)
    assert load_preprocessed(out, "0").label is not None
    unlabeled = load_preprocessed(out, "b")
    assert unlabeled.label is None and unlabeled.class_locations == {}
    assert json.loads((out / "dataset.json").read_text())["cases"]["b"]["has_label"] is False


def test_bad_inputs(dataset_copy, tmp_path):
    cases = _cases(dataset_copy)
    with pytest.raises(DataError, match="duplicate case ids"):
        preprocess_dataset([cases[0], cases[0]], tmp_path / "c", PLAN, workers=1, progress=False)
    mismatched = [("x", dataset_copy / "volume-0.nii.gz", dataset_copy / "segmentation-3.nii.gz")]
    with pytest.raises(DataError, match="segmentation-3"):
        preprocess_dataset(mismatched, tmp_path / "c", PLAN, workers=1, progress=False)
    with pytest.raises(DataError, match="no such file"):
        preprocess_dataset([("y", dataset_copy / "nope.nii.gz", None)], tmp_path / "c", PLAN, workers=1)
    with pytest.raises(DataError, match=r"dataset\.json missing"):
        read_cache_index(tmp_path / "empty")
    with pytest.raises(DataError, match="not in the preprocessed cache"):
        load_preprocessed(tmp_path / "c", "zzz")


def test_parallel_workers_give_same_result(dataset_copy, tmp_path):
    serial = preprocess_dataset(_cases(dataset_copy)[:2], tmp_path / "s", PLAN, workers=1, progress=False)
    parallel = preprocess_dataset(_cases(dataset_copy)[:2], tmp_path / "p", PLAN, workers=2, progress=False)
    for cid in ("0", "1"):
        np.testing.assert_array_equal(load_preprocessed(serial, cid).image, load_preprocessed(parallel, cid).image)
        assert load_preprocessed(serial, cid).meta == load_preprocessed(parallel, cid).meta


def test_workers_do_not_deadlock_after_threaded_torch_op(tmp_path):
    """Forked workers inherit the parent's OpenMP pool; a multi-threaded torch op before the pool starts used
    to hang the first torch op in every worker."""
    import subprocess
    import sys

    script = f"""
import torch, torch.nn.functional as F
torch.set_num_threads(2)
F.interpolate(torch.randn(1, 1, 64, 64, 64), size=(50, 50, 50), mode="trilinear")
from medseg.data import make_phantom
from medseg.preprocessing import PreprocessingPlan, preprocess_dataset
cases = [make_phantom(size="tiny", index=i) for i in range(2)]
preprocess_dataset(cases, {str(tmp_path)!r}, PreprocessingPlan.window((8, 8, 9)), workers=2, progress=False)
print(torch.get_num_threads())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"  # the caller's thread count is left alone
    assert {p.name for p in tmp_path.glob("*.image.npy")} == {"0.image.npy", "1.image.npy"}
