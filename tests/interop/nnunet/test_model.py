"""Reading nnU-Net model folders: folds, checkpoints, labels, architectures; bad input is one line, exit 2."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from medseg.cli import main
from medseg.data import make_phantom
from medseg.errors import DataError
from medseg.inference import InferenceSettings, Predictor
from medseg.interop.nnunet import class_names, is_nnunet_folder, load_nnunet_model
from medseg.io import read_volume
from medseg.io.label_map import LabelMapping
from medseg.io.nifti import write_nifti

from .conftest import SEEDED_DATASET, seeded_plans, write_seeded_folder

SETTINGS = InferenceSettings(mode="full", skip_air=False, precision="float32", runtime="torch")


def test_folder_is_read(seeded_folder):
    assert is_nnunet_folder(seeded_folder) and not is_nnunet_folder(seeded_folder / "fold_0")
    model = load_nnunet_model(seeded_folder)
    assert model.labels == {"0": "background", "1": "liver", "2": "tumor"}
    assert model.mirror_axes == (0, 1, 2) and model.plan.patch_size == (32, 16, 32)
    assert model.description["trainer"] == "nnUNetTrainer" and model.description["folds"] == ["fold_0"]
    with pytest.raises(DataError, match=r"checkpoint_best\.pth"):
        load_nnunet_model(seeded_folder, checkpoint="best")
    with pytest.raises(DataError, match="fold_3"):
        load_nnunet_model(seeded_folder, folds=[3])


def test_two_folds_are_an_ensemble(tmp_path):
    folder = write_seeded_folder(tmp_path / "a")
    other = write_seeded_folder(tmp_path / "b", seed=1)
    (other / "fold_0").rename(folder / "fold_1")
    predictor = Predictor.from_run(folder, device="cpu", settings=SETTINGS)
    assert predictor.members == 2 and len(predictor.sources) == 2
    volume = make_phantom(size="tiny", seed=0, index=1).image
    single = [Predictor.from_run(folder, device="cpu", settings=SETTINGS, folds=[k]) for k in (0, 1)]
    mean = np.mean([p.predict_probabilities(volume).array for p in single], axis=0)
    both = predictor.predict_probabilities(volume).array
    assert float(np.abs(both - mean).mean()) < 0.01  # medseg averages probabilities (nnU-Net: logits)


def _scan(tmp_path):
    path = tmp_path / "scan.nii.gz"
    write_nifti(make_phantom(size="tiny", seed=0, index=0).image, path)
    return path


def test_unknown_architecture_is_one_line_exit_2(tmp_path, capsys):
    plans = seeded_plans()
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "os.system"
    folder = write_seeded_folder(tmp_path, plans=plans)
    capsys.readouterr()
    assert main(["predict", "--model", str(folder), str(_scan(tmp_path)), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "plans.json" in err[0] and "'os.system' cannot be built" in err[0]


def test_a_layer_outside_torch_nn_is_refused(tmp_path):
    plans = seeded_plans()
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["nonlin"] = "subprocess.Popen"
    with pytest.raises(DataError, match=r"nonlin='subprocess\.Popen' is not an allowed torch\.nn layer"):
        load_nnunet_model(write_seeded_folder(tmp_path, plans=plans))


def test_region_based_labels_are_refused():
    with pytest.raises(DataError, match="region-based"):
        class_names({"labels": {"background": 0, "liver": [1, 2], "tumor": 2}, "regions_class_order": [1, 2]})
    assert class_names({"labels": {"background": 0, "a": 1, "ignore": 2}}) == {"0": "background", "1": "a"}
    with pytest.raises(DataError, match=r"0\.\.K-1"):
        class_names({"labels": {"background": 0, "liver": 5}})


def test_other_classes_are_mapped_with_labels(tmp_path):
    dataset = {**SEEDED_DATASET, "labels": {"background": 0, "spleen": 1, "liver": 2}}
    folder = write_seeded_folder(tmp_path, dataset=dataset)
    volume = make_phantom(size="tiny", seed=0, index=2).image
    raw = Predictor.from_run(folder, device="cpu", settings=SETTINGS)
    assert raw.labels == {"0": "background", "1": "spleen", "2": "liver"}
    assert raw.postprocessing.keep_largest_liver is False  # an imported model: no post-processing unless asked
    raw_labels = raw(volume).array
    mapped = replace(Predictor.from_run(folder, device="cpu", settings=SETTINGS),
                     label_mapping=LabelMapping.parse(["liver=2"]))
    out = mapped(volume)
    np.testing.assert_array_equal(out.array, (raw_labels == 2).astype(np.uint8))
    assert out.meta["labels"]["1"] == "liver"
    path = tmp_path / "scan.nii.gz"
    write_nifti(volume, path)
    assert main(["predict", "--model", str(folder), str(path), "--out", str(tmp_path / "out"), "--mode", "full",
                 "--no-skip-air", "--precision", "float32", "--runtime", "torch", "--no-preview",
                 "--labels", "liver=2"]) == 0
    written = read_volume(tmp_path / "out" / "scan_seg.nii.gz").array
    np.testing.assert_array_equal(written, out.array)
    report = json.loads((tmp_path / "out" / "scan_volumes.json").read_text())
    assert report  # volumes written from the mapped (LiTS) label map


def test_other_classes_without_labels_are_one_line(tmp_path, capsys):
    dataset = {**SEEDED_DATASET, "labels": {"background": 0, "spleen": 1, "liver": 2}}
    folder = write_seeded_folder(tmp_path, dataset=dataset)
    capsys.readouterr()
    assert main(["predict", "--model", str(folder), str(_scan(tmp_path)), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 spleen, 2 liver" in err[0] and "--labels liver=K" in err[0]


def test_an_nnunet_model_says_what_it_was_trained_on(seeded_folder):
    """``dataset.json``'s name and ``numTraining`` and the folder's trainer: the record on every output."""
    from medseg.inference import Predictor
    from medseg.runs.provenance import TrainingData

    predictor = Predictor.from_run(seeded_folder, device="cpu")
    dataset = json.loads((seeded_folder / "dataset.json").read_text())
    expected_name = dataset.get("name") or seeded_folder.parent.name
    assert predictor.training_data == (TrainingData(name=expected_name, n_cases=dataset["numTraining"],
                                                    framework="nnunet",
                                                    trainer="nnUNetTrainer__nnUNetPlans__3d_fullres"),)
    assert predictor.applied_postprocessing()["keep_largest_liver"] is False  # nnU-Net's raw output
