"""What a model was trained on: the record, from a data set folder, a checkpoint, an nnU-Net folder."""

from __future__ import annotations

import json

import pytest

from medseg.runs.provenance import UNKNOWN, TrainingData, describe_models, is_phantom_dataset, phantom_only


def test_a_phantom_data_set_is_recognised_by_its_manifest(tiny_dataset, tmp_path):
    record = TrainingData.from_dataset(tiny_dataset, n_cases=3)
    assert record == TrainingData(name=tiny_dataset.name, root=str(tiny_dataset.resolve()), n_cases=3, phantom=True)
    assert record.describe() == f"{tiny_dataset.name} (3 cases, synthetic phantom)"
    assert is_phantom_dataset(tiny_dataset)
    (tmp_path / "manifest.json").write_text(json.dumps({"generator": "someone else"}))
    assert not is_phantom_dataset(tmp_path) and not is_phantom_dataset(tmp_path / "missing")
    real = TrainingData.from_dataset(tmp_path, n_cases=131)
    assert not real.phantom and real.describe() == f"{tmp_path.name} (131 cases)"


@pytest.mark.parametrize("stored", [None, {}, {"name": 5}, "LiTS", [1]])
def test_checkpoints_without_a_record_are_unknown(stored):
    assert TrainingData.from_dict(stored) is UNKNOWN


def test_round_trip_and_lenient_fields():
    record = TrainingData(name="Dataset291_TotalSegmentator", n_cases=1559, framework="nnunet",
                          trainer="nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres")
    assert TrainingData.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    assert record.describe() == ("Dataset291_TotalSegmentator (1559 cases, nnunet "
                                 "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres)")
    odd = TrainingData.from_dict({"name": "x", "n_cases": True, "phantom": "yes", "root": 3})
    assert (odd.n_cases, odd.phantom, odd.root) == (None, False, None)


def test_phantom_only_needs_every_fold_on_the_phantom():
    phantom, real = TrainingData("p", phantom=True), TrainingData("LiTS", n_cases=100)
    assert phantom_only([phantom, phantom]) and not phantom_only([phantom, real]) and not phantom_only([])
    assert describe_models([phantom, phantom, real]) == "p (synthetic phantom); LiTS (100 cases)"
    assert describe_models([]) == "unknown"
