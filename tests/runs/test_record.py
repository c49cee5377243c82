"""RunRecord: typed fields from a checkpoint dict, documented defaults, one-line errors naming the file."""

from __future__ import annotations

import copy

import pytest

from medseg.errors import DataError
from medseg.preprocessing import PreprocessingPlan
from medseg.runs import RunRecord

MODEL = {"name": "unet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3, "depth": 3, "base_filters": 4}
PLAN = PreprocessingPlan.window((2.0, 1.5, 1.5), (-150.0, 250.0))


def _checkpoint(**inference):
    info = {"patch_size": [16, 24, 32], "spatial_dims": 3, "num_classes": 3, "context_slices": 0,
            "mirror_axes": [1, 2], "labels": {"0": "background", "1": "liver", "2": "tumor"},
            "postprocessing": {"keep_largest_liver": False}}
    info.update(inference)
    return {"model": {}, "model_config": dict(MODEL), "plan": PLAN.to_dict(), "inference": info}


def test_fields_are_typed_copies_of_the_checkpoint():
    record = RunRecord.from_checkpoint(_checkpoint(), source="run/best.pt")
    assert record.patch_size == (16, 24, 32) and record.spatial_dims == 3 and record.num_classes == 3
    assert record.mirror_axes == (1, 2) and record.context_slices == 0
    assert record.plan == PLAN and record.plan.target_spacing_mm == (2.0, 1.5, 1.5)
    assert dict(record.labels) == {"0": "background", "1": "liver", "2": "tumor"}
    assert dict(record.postprocessing) == {"keep_largest_liver": False}
    assert str(record.source) == "run/best.pt"
    with pytest.raises(TypeError):
        record.model_config["depth"] = 5  # read-only


def test_record_does_not_alias_the_checkpoint():
    checkpoint = _checkpoint()
    record = RunRecord.from_checkpoint(checkpoint)
    checkpoint["model_config"]["depth"] = 9
    checkpoint["inference"]["labels"]["1"] = "spleen"
    assert record.model_config["depth"] == 3 and record.labels["1"] == "liver"


def test_optional_keys_take_their_documented_defaults():
    checkpoint = _checkpoint()
    for key in ("spatial_dims", "num_classes", "context_slices", "mirror_axes", "labels", "postprocessing"):
        del checkpoint["inference"][key]
    checkpoint["model_config"]["out_channels"] = 4
    record = RunRecord.from_checkpoint(checkpoint)
    assert record.spatial_dims == 3  # model_config's
    assert record.num_classes == 4  # model_config's out_channels
    assert record.context_slices == 0 and record.mirror_axes is None
    assert dict(record.labels) == {"0": "background", "1": "liver", "2": "tumor"}
    assert dict(record.postprocessing) == {}
    assert RunRecord.from_checkpoint(_checkpoint(context_slices=None)).context_slices == 0


@pytest.mark.parametrize(("change", "message"), [
    ({"patch_size": [16, 16]}, r"inference\.patch_size \(16, 16\) does not match spatial_dims 3"),
    ({"patch_size": "16"}, r"inference\.patch_size must be a list of integers"),
    ({"patch_size": [16, 0, 16]}, r"inference\.patch_size must be >= 1, got 0"),
    ({"num_classes": 1}, r"inference\.num_classes must be >= 2, got 1"),
    ({"num_classes": 2.5}, r"inference\.num_classes must be an integer, got 2\.5"),
    ({"spatial_dims": 4}, r"inference\.spatial_dims must be one of \[2, 3\], got 4"),
    ({"context_slices": -1}, r"inference\.context_slices must be >= 0"),
    ({"mirror_axes": [0, 3]}, r"inference\.mirror_axes \(0, 3\) must be below spatial_dims 3"),
    ({"labels": ["background"]}, r"inference\.labels must be a mapping, got list"),
])
def test_bad_values_fail_with_one_line_naming_the_file(change, message):
    with pytest.raises(DataError, match=message) as info:
        RunRecord.from_checkpoint(_checkpoint(**change), source="run/best.pt")
    assert str(info.value).startswith("run/best.pt: ") and "\n" not in str(info.value)


def test_missing_sections_and_bad_plan():
    checkpoint = _checkpoint()
    del checkpoint["plan"], checkpoint["inference"]
    with pytest.raises(DataError, match=r"^x\.pt: checkpoint lacks plan, inference"):
        RunRecord.from_checkpoint(checkpoint, source="x.pt")
    bad_plan = copy.deepcopy(_checkpoint())
    bad_plan["plan"]["colour"] = "red"
    with pytest.raises(DataError, match=r"^x\.pt: checkpoint plan: unknown plan keys \['colour'\]"):
        RunRecord.from_checkpoint(bad_plan, source="x.pt")
    no_dims = _checkpoint()
    del no_dims["inference"]["spatial_dims"], no_dims["model_config"]["spatial_dims"]
    with pytest.raises(DataError, match=r"inference\.spatial_dims must be an integer, got None"):
        RunRecord.from_checkpoint(no_dims, source="x.pt")
