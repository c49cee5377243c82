"""DICOM reading and writing: real files from pydicom / pydicom-data, phantom round trips, series errors."""

from __future__ import annotations

import logging

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from medseg.data import make_phantom
from medseg.errors import DataError
from medseg.io import (
    Volume,
    affine_from_geometry,
    is_dicom_file,
    list_dicom_series,
    read_dicom_file,
    read_dicom_series,
    read_volume,
    to_canonical,
    write_dicom_series,
)

LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _sitk_volume(image: sitk.Image) -> Volume:
    """A Volume built from SimpleITK's reading: an independent reader to compare against."""
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    affine = affine_from_geometry(image.GetSpacing(), origin_mm=image.GetOrigin(),
                                  direction=np.array(image.GetDirection()).reshape(3, 3))
    return Volume(array, LPS_RAS @ affine)


def _edit(path, **changes):
    ds = pydicom.dcmread(path)
    for key, value in changes.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture()
def series(tmp_path, tiny_case):
    return write_dicom_series(tiny_case.image, tmp_path / "series")


def test_ct_small_values_and_geometry_match_pydicom():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    vol = read_dicom_file(path)
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert vol.shape == (ds.Columns, ds.Rows, 1)
    np.testing.assert_array_equal(vol.array[:, :, 0], expected.T)
    assert vol.array.dtype == np.int16
    assert vol.spacing_mm == pytest.approx((float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0]), 5.0))
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    np.testing.assert_allclose(vol.origin_mm, ipp * [-1, -1, 1])
    assert vol.meta["modality"] == "CT" and read_volume(path).same_geometry(vol)


def test_enhanced_multiframe_ct_matches_functional_groups_and_simpleitk():
    path = get_testdata_file("eCT_Supplemental.dcm")
    if path is None:
        pytest.skip("pydicom-data's eCT_Supplemental.dcm is not installed")
    ds = pydicom.dcmread(path)
    vol = read_dicom_file(path)
    assert vol.shape == (512, 512, 2)
    rescale = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    expected = ds.pixel_array * float(rescale.RescaleSlope) + float(rescale.RescaleIntercept)
    z = [float(f.PlanePositionSequence[0].ImagePositionPatient[2]) for f in ds.PerFrameFunctionalGroupsSequence]
    order = np.argsort(z)  # frames run along +z (the normal of this orientation points to -z)
    np.testing.assert_array_equal(vol.array, expected[order].transpose(2, 1, 0))
    assert vol.spacing_mm == pytest.approx((0.388672, 0.388672, 10.0))
    reference = _sitk_volume(sitk.ReadImage(path))
    np.testing.assert_allclose(vol.affine, reference.affine, atol=1e-4)
    np.testing.assert_array_equal(vol.array, reference.array)


@pytest.mark.parametrize("index", [0, 1, 2, 3])  # RAS, LPS, LPI (left-handed), ALS (permuted)
def test_phantom_series_round_trip(tmp_path, index):
    case = make_phantom(size="tiny", seed=0, index=index)
    folder = write_dicom_series(case.image, tmp_path / "ct", series_uid="1.2.3.4")
    back = read_volume(folder)
    np.testing.assert_array_equal(back.array, case.image.array)
    np.testing.assert_allclose(back.affine, case.image.affine, atol=1e-6)
    assert back.meta["series_uid"] == "1.2.3.4" and back.meta["format"] == "dicom"
    # SimpleITK (GDCM sorting, its own geometry) sees the same voxels at the same world positions
    reference = _sitk_volume(sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))))
    ours, theirs = to_canonical(back)[0], to_canonical(reference)[0]
    np.testing.assert_array_equal(ours.array, theirs.array)
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-4)


def test_oblique_tilted_geometry_round_trip(tmp_path):
    """Rotated in-plane axes and a gantry-tilt slice step (not along the normal) survive the round trip."""
    c, s = np.cos(np.radians(25)), np.sin(np.radians(25))
    affine = np.eye(4)
    affine[:3, 0] = [0.7 * c, 0.7 * s, 0.0]
    affine[:3, 1] = [-0.9 * s, 0.9 * c, 0.0]
    affine[:3, 2] = [0.0, 0.6, 2.5]  # tilted slice step
    affine[:3, 3] = [12.5, -40.25, 101.0]
    values = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4) * 7 - 1000
    vol = Volume(values, affine)
    back = read_dicom_series(write_dicom_series(vol, tmp_path / "oblique"))
    np.testing.assert_array_equal(back.array, values)
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)


def test_missing_slice_named_with_gap(series, tiny_case):
    files = sorted(series.iterdir())
    files[5].unlink()
    gap = tiny_case.image.spacing_mm[2]
    with pytest.raises(DataError, match=rf"missing slice.*expected a gap of {gap:.3g} mm, found {2 * gap:.3g} mm.*"
                       rf"{files[4].name} and {files[6].name}") as info:
        read_dicom_series(series)
    assert str(series) in str(info.value) and "\n" not in str(info.value)


def test_non_uniform_spacing(series):
    path = sorted(series.iterdir())[4]
    ds = pydicom.dcmread(path)
    ipp = [float(v) for v in ds.ImagePositionPatient]
    _edit(path, ImagePositionPatient=[ipp[0], ipp[1], ipp[2] + 3.0])
    with pytest.raises(DataError, match="non-uniform slice spacing"):
        read_dicom_series(series)


def test_two_series_listed_and_selectable(tmp_path, tiny_case):
    folder = tmp_path / "study"
    write_dicom_series(tiny_case.image, folder / "a", series_uid="1.2.826.1")
    small = tiny_case.image.array[:, :, :7]
    write_dicom_series(Volume(small, tiny_case.image.affine), folder / "b", series_uid="1.2.826.2")
    infos = {i.uid: i.n_slices for i in list_dicom_series(folder)}
    assert infos == {"1.2.826.1": tiny_case.image.shape[2], "1.2.826.2": 7}
    pattern = r"2 DICOM series.*1\.2\.826\.1 \(\d+ slices.*1\.2\.826\.2 \(7 slices.*series_uid"
    with pytest.raises(DataError, match=pattern):
        read_dicom_series(folder)
    picked = read_dicom_series(folder, series_uid="1.2.826.2")
    np.testing.assert_array_equal(picked.array, small)
    with pytest.raises(DataError, match=r"no series with uid 9\.9"):
        read_dicom_series(folder, series_uid="9.9")


def test_mixed_image_sizes(tmp_path, tiny_case):
    folder = tmp_path / "mixed"
    write_dicom_series(tiny_case.image, folder / "a", series_uid="1.2.3")
    part = Volume(tiny_case.image.array[:40, :, :2], tiny_case.image.affine)
    write_dicom_series(part, folder / "b", series_uid="1.2.3")
    with pytest.raises(DataError, match="mixed image sizes"):
        read_dicom_series(folder)


def test_non_ct_modality_warns(series, caplog):
    for path in series.iterdir():
        _edit(path, Modality="MR")
    with caplog.at_level(logging.WARNING, logger="medseg.io.dicom"):
        vol = read_dicom_series(series)
    assert vol.meta["modality"] == "MR"
    assert any("not CT" in r.getMessage() and str(series) in r.getMessage() for r in caplog.records)


def test_empty_and_truncated(tmp_path, series):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no DICOM images"):
        read_dicom_series(tmp_path / "empty")
    path = sorted(series.iterdir())[0]
    raw = path.read_bytes()
    for cut, problem in [(300, "truncated or incomplete"), (len(raw) - 100, "cannot decode pixel data")]:
        path.write_bytes(raw[:cut])
        with pytest.raises(DataError, match=problem) as info:
            read_dicom_series(series)
        assert str(path) in str(info.value)


def test_is_dicom_file(tmp_path):
    assert is_dicom_file(get_testdata_file("CT_small.dcm"))
    (tmp_path / "x.dcm").write_text("not dicom")
    assert not is_dicom_file(tmp_path / "x.dcm") and not is_dicom_file(tmp_path / "missing.dcm")


def test_simpleitk_fallback_for_undecodable_pixels(monkeypatch):
    """When pydicom cannot decode, SimpleITK (GDCM) decodes and rescales; the values must not change."""
    path = get_testdata_file("CT_small.dcm")
    expected = read_dicom_file(path).array

    def no_decoder(self):
        raise NotImplementedError("no decoder")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoder))
    np.testing.assert_array_equal(read_dicom_file(path).array, expected)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_photometric_interpretation_never_changes_hu(series, tiny_case, photometric):
    """Issue #29.2: HU are the modality LUT of the stored values, whatever the display rule; GDCM inverted
    MONOCHROME1 (-1024 read as 64511). Checked against pydicom's modality LUT of every file, and the scan."""
    from pydicom.pixels import apply_modality_lut

    for path in sorted(series.iterdir()):
        _edit(path, PhotometricInterpretation=photometric)
    vol = read_dicom_series(series)
    files = sorted((pydicom.dcmread(p) for p in series.iterdir()), key=lambda d: float(d.ImagePositionPatient[2]))
    assert {ds.PhotometricInterpretation for ds in files} == {photometric}
    independent = {float(v) for ds in files for v in np.unique(apply_modality_lut(ds.pixel_array, ds))}
    assert set(np.unique(vol.array).astype(float)) == independent
    assert vol.array.min() == tiny_case.image.array.min() == -1024
    assert vol.array.max() == tiny_case.image.array.max()
    assert vol.shape == tiny_case.image.shape
