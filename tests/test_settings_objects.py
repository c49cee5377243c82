"""The frozen options objects that replaced wide signatures (issue #25): an object and its fields given as
keywords run the same, keywords replace the object's fields, and an unknown keyword is refused."""

from __future__ import annotations

import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest

from medseg.evaluation.runner import EvaluateOptions, evaluate_folders
from medseg.inference.batch import BatchOptions, collect_inputs, predict_batch
from medseg.io import Volume, write_volume
from medseg.outputs.manifest import MANIFEST_NAME, ManifestInfo, RunManifest

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


class _Thresholder:
    def predict(self, volume):
        return volume.with_array((np.asarray(volume.array) > 0).astype(np.uint8), kind="label"), {}


@pytest.mark.parametrize("cls", [EvaluateOptions, BatchOptions, ManifestInfo])
def test_options_are_frozen(cls):
    fields = {"command": "predict"} if cls is ManifestInfo else {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        cls(**fields).progress = True  # type: ignore[misc]


def test_evaluate_folders_options_object_equals_keywords(tmp_path):
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    pred_dir.mkdir(), ref_dir.mkdir()
    ref = np.zeros((12, 10, 6), np.uint8)
    ref[2:10, 2:8, 1:5] = 1
    pred = ref.copy()
    pred[2:4] = 0  # 2 of 8 rows missed: liver Dice 2 * 144 / (192 + 144) = 6/7
    nib.save(nib.Nifti1Image(pred, AFFINE), str(pred_dir / "1_seg.nii.gz"))
    nib.save(nib.Nifti1Image(ref, AFFINE), str(ref_dir / "segmentation-1.nii.gz"))
    by_object = evaluate_folders(pred_dir, ref_dir, tmp_path / "a", EvaluateOptions(workers=1, progress=False,
                                                                                     figures=False))  # fmt: skip
    by_keywords = evaluate_folders(pred_dir, ref_dir, tmp_path / "b", workers=1, progress=False, figures=False)
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in "ab")
    assert a["config"] == b["config"] and a["missing"] == b["missing"] == []
    assert by_object.results[0].row["liver_dice"] == pytest.approx(6 / 7)
    assert by_keywords.results[0].row == by_object.results[0].row
    with pytest.raises(TypeError, match="workerz"):
        evaluate_folders(pred_dir, ref_dir, tmp_path / "c", workerz=1)


def test_predict_batch_keywords_replace_the_options_fields(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    array = np.full((4, 5, 6), -100, np.int16)
    array[1:3, 1:4, 2:5] = 40
    write_volume(Volume(array, AFFINE), folder / "a.nii.gz")
    inputs, _ = collect_inputs([folder])
    out = tmp_path / "pred"
    first = predict_batch(_Thresholder(), inputs, out, BatchOptions(progress=False))
    assert [o.status for o in first.outcomes] == ["ok"]
    again = predict_batch(_Thresholder(), inputs, out, BatchOptions(progress=False), skip_existing=True)
    assert [o.status for o in again.outcomes] == ["skipped"]
    with pytest.raises(TypeError, match="skip_existin"):
        predict_batch(_Thresholder(), inputs, out, skip_existin=True)


def test_manifest_info_object_equals_keywords(tmp_path):
    info = ManifestInfo(command="evaluate", settings={"a": 1}, device="cpu", argv=["medseg", "evaluate"])
    RunManifest.start(tmp_path / "a", info)
    RunManifest.start(tmp_path / "b", command="evaluate", settings={"a": 1}, device="cpu", argv=["medseg", "evaluate"])
    RunManifest.start(tmp_path / "c", info, device="cuda")
    a, b, c = (json.loads((tmp_path / d / MANIFEST_NAME).read_text()) for d in "abc")
    same = ("command", "settings", "device", "argv", "checkpoints", "pipeline")
    assert {k: a[k] for k in same} == {k: b[k] for k in same}
    assert (a["command"], a["device"], a["argv"], c["device"]) == ("evaluate", "cpu", ["medseg", "evaluate"], "cuda")
    with pytest.raises(TypeError):
        RunManifest.start(tmp_path / "d")  # no command
