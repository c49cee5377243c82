"""``medseg predict --postprocessing FILE``: the choice of ``medseg crossval`` applied to a model that has none
of its own (an nnU-Net folder), and its refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from medseg.cli import main
from medseg.data import make_phantom
from medseg.io import read_volume
from medseg.io.nifti import write_nifti

CHOSEN = {"keep_largest_liver": True, "tumor_inside_liver_dilation_mm": None, "min_lesion_volume_mm3": 0.0}


@pytest.fixture(scope="module")
def seeded_model(tmp_path_factory):
    from ..interop.nnunet.conftest import write_seeded_folder

    return write_seeded_folder(tmp_path_factory.mktemp("pp_seeded"), seed=5)


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    path = tmp_path_factory.mktemp("pp_scan") / "scan.nii.gz"
    write_nifti(make_phantom(size="tiny", seed=2, index=0).image, path)
    return path


def _predict(model, scan, out, *extra) -> int:
    return main(["predict", "--model", str(model), str(scan), "--out", str(out), "--device", "cpu", "--mode", "full",
                 "--no-skip-air", "--no-preview", "--no-volumes", *extra])


def _liver_components(path) -> int:
    labels = np.asarray(read_volume(path).array)
    return ndimage.label(labels > 0, structure=np.ones((3, 3, 3)))[1]


def test_the_file_s_choice_is_applied_and_recorded(seeded_model, scan, tmp_path):
    choice = tmp_path / "postprocessing.json"
    choice.write_text(json.dumps({"chosen": CHOSEN, "steps": []}))
    assert _predict(seeded_model, scan, tmp_path / "raw") == 0  # an imported model: no post-processing
    assert _predict(seeded_model, scan, tmp_path / "pp", "--postprocessing", str(choice)) == 0
    raw, kept = tmp_path / "raw" / "scan_seg.nii.gz", tmp_path / "pp" / "scan_seg.nii.gz"
    assert _liver_components(raw) > 1  # the seeded network leaves several foreground pieces ...
    assert _liver_components(kept) == 1  # ... and keep_largest_liver keeps one (scipy's count, 26-connected)
    raw_fg = ndimage.label(read_volume(raw).array > 0, structure=np.ones((3, 3, 3)))[0]
    largest = np.bincount(raw_fg.ravel())[1:].argmax() + 1
    np.testing.assert_array_equal(read_volume(kept).array > 0, raw_fg == largest)
    run = json.loads((tmp_path / "pp" / "run.json").read_text())
    assert run["pipeline"]["postprocessing"] == CHOSEN
    assert json.loads((tmp_path / "raw" / "run.json").read_text())["pipeline"]["postprocessing"] == {
        "keep_largest_liver": False, "tumor_inside_liver_dilation_mm": None, "min_lesion_volume_mm3": 0.0}


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"),
    ("{not json", "unreadable post-processing choice"),
    ('{"steps": []}', "expected {'chosen'"),
    ('{"chosen": {"keep_largest": true}}', "unknown postprocessing key(s) ['keep_largest']"),
    ('{"chosen": {"min_lesion_volume_mm3": -1}}', "min_lesion_volume_mm3 must be >= 0"),
])
def test_a_bad_file_is_one_line(seeded_model, scan, tmp_path, capsys, content, message):
    path = tmp_path / "postprocessing.json"
    if content is not None:
        path.write_text(content)
    assert _predict(seeded_model, scan, tmp_path / "out", "--postprocessing", str(path)) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before any work


def test_postprocessing_file_and_no_postprocessing_contradict(seeded_model, scan, tmp_path, capsys):
    path = tmp_path / "postprocessing.json"
    path.write_text(json.dumps({"chosen": CHOSEN}))
    assert _predict(seeded_model, scan, tmp_path / "out", "--postprocessing", str(path), "--no-postprocessing") == 2
    assert "contradict" in capsys.readouterr().err


@pytest.mark.parametrize(("recorded", "labels", "refused"), [
    ({"liver": [5], "tumor": []}, [], "chosen for classes liver=5 but this prediction reads liver=1 tumor=2"),
    ({"liver": [1], "tumor": [2]}, ["--labels", "liver=1"], "chosen for classes liver=1 tumor=2 but this "
                                                            "prediction reads liver=1"),
    ({"liver": [1], "tumor": [2]}, [], None),  # what medseg crossval records for an nnU-Net folder of LiTS' classes
    ({"liver": [1], "tumor": [2]}, ["--labels", "liver=1", "tumor=2"], None),
])
def test_a_choice_made_for_other_classes_is_refused(seeded_model, scan, tmp_path, capsys, recorded, labels, refused):
    path = tmp_path / "postprocessing.json"
    path.write_text(json.dumps({"chosen": CHOSEN, "labels": recorded}))
    code = _predict(seeded_model, scan, tmp_path / "out", "--postprocessing", str(path), *labels)
    err = capsys.readouterr().err
    if refused is None:
        assert code == 0 and _liver_components(tmp_path / "out" / "scan_seg.nii.gz") == 1
        return
    assert code == 2 and refused in err and str(path) in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before any work
