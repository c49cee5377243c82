"""Label maps from other tools through the CLI: other voxel orders, value mappings, DICOM SEG references.

Every expected number comes from the original phantom label map (voxel counts x voxel volume, numpy
means), never from medseg's own measurement of the converted file.
"""

from __future__ import annotations

import json
import shutil

import nibabel.orientations as nio
import numpy as np
import pytest

from medseg.cli import main
from medseg.io import Volume, read_dicom_series, write_dicom_series, write_volume

from ..io.conftest import dicom_case  # noqa: F401


def _stored_as(volume: Volume, codes: str) -> Volume:
    transform = nio.ornt_transform(nio.io_orientation(volume.affine), nio.axcodes2ornt(tuple(codes)))
    return Volume(np.ascontiguousarray(nio.apply_orientation(volume.array, transform)),
                  volume.affine @ nio.inv_ornt_aff(transform, volume.shape))


def _truth(label: np.ndarray, image: np.ndarray, voxel_ml: float) -> dict:
    liver, tumor = label > 0, label == 2
    return {"liver_ml": liver.sum() * voxel_ml, "tumor_ml": tumor.sum() * voxel_ml,
            "liver_hu": float(image[liver].mean())}


@pytest.fixture(scope="module")
def lpi_series(tiny_case, tmp_path_factory):
    """The tiny case's CT as a DICOM series read back in L,P,I voxel order, and the original label map."""
    root = tmp_path_factory.mktemp("lpi")
    folder = write_dicom_series(_stored_as(tiny_case.image, "LPI"), root / "series")
    ct = read_dicom_series(folder)
    assert "".join(nio.aff2axcodes(ct.affine)) == "LPI"
    return folder, tiny_case


@pytest.mark.parametrize("codes", ["LAS", "PSR"])
def test_volumes_label_in_another_voxel_order_than_the_series(lpi_series, tmp_path, capsys, codes):
    folder, case = lpi_series
    seg = write_volume(_stored_as(case.label, codes), tmp_path / f"their_liver_{codes}.nii.gz", label=True)
    out = tmp_path / "v.json"
    assert main(["volumes", str(seg), "--image", str(folder), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    truth = _truth(case.label.array, case.image.array, case.label.voxel_volume_ml)
    assert report["liver_ml"] == pytest.approx(truth["liver_ml"]) and report["tumor_ml"] == pytest.approx(
        truth["tumor_ml"])
    assert report["hu"]["liver"]["mean"] == pytest.approx(truth["liver_hu"], abs=1e-6)
    assert report["labels"] == {"liver": [1], "tumor": [2], "explicit": False}


def test_volumes_grid_mismatch_is_one_line_with_both_files(lpi_series, tmp_path, capsys):
    folder, case = lpi_series
    shifted = case.label.affine.copy()
    shifted[:3, 3] += (0.0, 0.0, 8.0)
    seg = write_volume(Volume(case.label.array, shifted), tmp_path / "off.nii.gz", label=True)
    assert main(["volumes", str(seg), "--image", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(seg) in err and str(folder) in err
    assert "orientation LPI" in err and "spacing" in err and "origin (" in err and "np.float64" not in err


def _multi_organ(lab: np.ndarray) -> np.ndarray:
    """Liver 5, tumor 6, and a "spleen" (1) in a corner away from the liver, as a multi-organ tool writes."""
    out = np.where(lab == 1, 5, np.where(lab == 2, 6, 0))
    out[:3, :3, :3] = 1
    return out


@pytest.mark.parametrize(("encode", "flags", "tumor_kept"), [
    (_multi_organ, ["liver=5", "tumor=6"], True),
    (lambda lab: np.where(lab > 0, 255, 0), ["liver=255"], False),
    (lambda lab: np.where(lab == 2, 3, lab), ["liver=1", "tumor=2,3"], True),
])
def test_volumes_with_a_label_mapping(tiny_case, tmp_path, encode, flags, tumor_kept):
    assert not tiny_case.label.array[:3, :3, :3].any()
    stored = encode(tiny_case.label.array).astype(np.uint8)
    seg = write_volume(tiny_case.label.with_array(stored), tmp_path / "other_tool.nii.gz", label=True)
    assert main(["volumes", str(seg)]) == 2  # never scored as liver/tumor without a mapping
    out = tmp_path / "v.json"
    assert main(["volumes", str(seg), "--json", str(out), "--labels", *flags]) == 0
    report = json.loads(out.read_text())
    truth = _truth(tiny_case.label.array, tiny_case.image.array, tiny_case.label.voxel_volume_ml)
    assert report["liver_ml"] == pytest.approx(truth["liver_ml"])
    assert report["tumor_ml"] == pytest.approx(truth["tumor_ml"] if tumor_kept else 0.0)
    assert report["labels"]["explicit"] is True and report["labels"]["liver"] == [int(flags[0].split("=")[1])]


def test_volumes_unmapped_values_name_the_file(tiny_case, tmp_path, capsys):
    stored = np.where(tiny_case.label.array == 1, 5, 0).astype(np.uint8)
    seg = write_volume(tiny_case.label.with_array(stored), tmp_path / "totalseg.nii.gz", label=True)
    assert main(["volumes", str(seg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"medseg volumes: error: {seg}: label values 5 outside {{0, 1, 2}}; a map from another tool? "
                   "map its values with --labels (e.g. --labels liver=5)")


def test_volumes_dicom_seg_with_its_series(dicom_case, tmp_path):  # noqa: F811
    case, series, seg = dicom_case
    out = tmp_path / "v.json"
    assert main(["volumes", str(seg), "--image", str(series), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    truth = _truth(case.label.array, case.image.array, case.label.voxel_volume_ml)
    assert report["liver_ml"] == pytest.approx(truth["liver_ml"]) and report["tumor_ml"] == pytest.approx(
        truth["tumor_ml"])
    assert report["hu"]["liver"]["mean"] == pytest.approx(truth["liver_hu"], abs=1e-6)
    assert report["labels"]["liver"] == ["1 Liver"] and report["labels"]["tumor"] == ["2 Liver tumor"]


def test_evaluate_dicom_seg_reference_and_permuted_prediction(dicom_case, tmp_path):  # noqa: F811
    case, _, seg = dicom_case
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref.mkdir()
    shutil.copy(seg, ref / "3.dcm")
    write_volume(_stored_as(case.label, "SPL"), pred / "3_seg.nii.gz", label=True)
    out = tmp_path / "eval"
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out), "--workers", "1",
                 "--no-figures"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["regions"]["liver"]["dice"]["mean"] == 1.0 and summary["regions"]["tumor"]["dice"]["mean"] == 1.0
    assert summary["failed_cases"] == [] and summary["labels"]["reference"]["explicit"] is False


def test_evaluate_prediction_from_another_tool(tiny_dataset, tmp_path, capsys):
    import nibabel as nib

    pred = tmp_path / "pred"
    pred.mkdir()
    for case in ("0", "1", "2", "3"):
        img = nib.load(tiny_dataset / f"segmentation-{case}.nii.gz")
        data = np.asarray(img.dataobj)
        nib.save(nib.Nifti1Image(np.where(data == 1, 5, np.where(data == 2, 6, 0)).astype(np.uint8), img.affine),
                 pred / f"{case}_seg.nii.gz")
    out = tmp_path / "eval"
    assert main(["evaluate", "--pred", str(pred), "--ref", str(tiny_dataset), "--out", str(out), "--workers", "1",
                 "--no-figures"]) == 2  # every case refused: label values 5, 6
    assert "label values 5, 6 outside {0, 1, 2}" in capsys.readouterr().err
    assert main(["evaluate", "--pred", str(pred), "--ref", str(tiny_dataset), "--out", str(out), "--workers", "1",
                 "--no-figures", "--pred-labels", "liver=5", "tumor=6"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["regions"]["liver"]["dice"]["mean"] == 1.0
    assert summary["labels"]["prediction"] == {"liver": [5], "tumor": [6], "explicit": True}


def test_evaluate_one_prediction_against_one_dicom_seg(dicom_case, tmp_path):  # noqa: F811
    case, _, seg = dicom_case
    pred = case.label.array.copy()
    pred[pred == 2] = 1  # the tumor missed
    path = write_volume(case.label.with_array(pred), tmp_path / "mine.nii.gz", label=True)
    out = tmp_path / "eval"
    assert main(["evaluate", "--pred", str(path), "--ref", str(seg), "--out", str(out), "--workers", "1",
                 "--no-figures"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["regions"]["liver"]["dice"]["mean"] == 1.0
    assert summary["detection"]["fn"] == 3 and summary["detection"]["tp"] == 0  # the phantom's three lesions


def test_volumes_refuses_a_ct_as_label_map_with_or_without_labels(tiny_case, tmp_path, capsys):
    """A mapping chooses values; it never turns a CT into a label map (issue #28: 27.1 mL of "liver" before)."""
    ct = write_volume(tiny_case.image, tmp_path / "ct.nii.gz")
    for flags in ([], ["--labels", "liver=5"]):
        assert main(["volumes", str(ct), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"medseg volumes: error: {ct}: ") and "looks like a CT scan, not a label map" in err
        assert "\n" not in err


def test_predict_refuses_another_tools_multi_label_map_as_scan(tiny_case, tmp_path, capsys, untrained_run):
    body = tiny_case.image.array > -500
    organs = np.zeros(body.shape, dtype=np.uint8)
    organs[body] = np.arange(np.count_nonzero(body)) * 40 // np.count_nonzero(body) + 1
    scan = write_volume(tiny_case.image.with_array(organs), tmp_path / "volume-7.nii.gz", label=True)
    code = main(["predict", "--model", str(untrained_run), str(scan), "--out", str(tmp_path / "p"), "--device", "cpu",
                 "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "41 integer values 0..40, mostly 0: this is a multi-label map (segmentation), not a CT scan" in err
    assert not list((tmp_path / "p").glob("*_seg.nii.gz"))


def test_a_reference_without_tumor_label_leaves_tumor_not_scored(tiny_dataset, tmp_path, capsys):
    """Another tool's liver map (liver = 5, no tumor class) as reference: tumor is "not scored" (empty CSV
    cells, null in JSON, a console line), never Dice 1 for an empty prediction or 0 otherwise (issue #28)."""
    import nibabel as nib
    import pandas as pd

    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir()
    pred.mkdir()
    for case in ("0", "1"):
        img = nib.load(tiny_dataset / f"segmentation-{case}.nii.gz")
        data = np.asarray(img.dataobj)
        nib.save(nib.Nifti1Image(np.where(data > 0, 5, 0).astype(np.uint8), img.affine), ref / f"{case}.nii.gz")
        nib.save(nib.Nifti1Image(data.astype(np.uint8), img.affine), pred / f"{case}_seg.nii.gz")  # tumor predicted
    out = tmp_path / "eval"
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out), "--workers", "1",
                 "--labels", "liver=5"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "tumor  not scored: the references declare no tumor label (--labels)" in printed
    table = pd.read_csv(out / "per_case.csv", dtype={"case": str}).set_index("case")
    assert (table["liver_dice"] == 1.0).all()  # liver = labels 1 and 2 of the prediction
    for column in ("tumor_dice", "tumor_hd95_mm", "lesions_fp", "lesions_tp", "tumor_burden_pred_percent", "mean_iou"):
        assert table[column].isna().all(), column
    raw = (out / "per_case.csv").read_text().splitlines()
    header, first = raw[0].split(","), raw[1].split(",")
    assert first[header.index("tumor_dice")] == "" and first[header.index("liver_dice")] == "1"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["regions"]["tumor"] is None and summary["not_scored"] == ["tumor"]
    assert "detection" not in summary and "lesion_detection" not in summary and "tumor_burden" not in summary
    assert summary["regions"]["liver"]["dice"]["mean"] == 1.0
    assert (out / "volumes.png").stat().st_size > 0
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(tmp_path / "lits"),
                 "--labels", "liver=5", "--protocol", "lits2017"]) == 2  # fmt: skip
    assert "scores tumors, but the references declare no tumor label" in capsys.readouterr().err
