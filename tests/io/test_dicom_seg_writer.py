"""DICOM SEG out: written from phantom and real series, read back with highdicom and pydicom."""

from __future__ import annotations

import shutil

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medseg.data import make_phantom
from medseg.errors import DataError
from medseg.io import Volume, read_volume, write_dicom_series
from medseg.io.dicom_seg_writer import EmptySegmentationError, SegSettings, write_dicom_seg

SHA = "0123456789abcdef" * 4


def _files(folder):
    return sorted(p for p in folder.iterdir() if p.is_file())


def _readback(seg_path, sources):
    """``{SOPInstanceUID: (rows, columns) label map}`` from the SEG via highdicom, liver + tumor."""
    seg = hd.seg.segread(seg_path)
    numbers = [int(s.SegmentNumber) for s in seg.SegmentSequence]
    uids = [str(ds.SOPInstanceUID) for ds in sources]
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=numbers, combine_segments=False,
                                               ignore_spatial_locations=True)
    return {uid: pixels[i].astype(np.uint8).sum(axis=-1) for i, uid in enumerate(uids)}


def _check_references(seg_path, sources):
    seg = pydicom.dcmread(seg_path)
    src = sources[0]
    assert seg.Modality == "SEG" and seg.SOPClassUID == pydicom.uid.SegmentationStorage
    assert seg.StudyInstanceUID == src.StudyInstanceUID
    if "FrameOfReferenceUID" in src:  # 693_J2KR.dcm has none: the writer makes one up (and warns)
        assert seg.FrameOfReferenceUID == src.FrameOfReferenceUID
    ref_series = seg.ReferencedSeriesSequence[0]
    assert ref_series.SeriesInstanceUID == src.SeriesInstanceUID
    assert {str(r.ReferencedSOPInstanceUID) for r in ref_series.ReferencedInstanceSequence} == {
        str(ds.SOPInstanceUID) for ds in sources}
    return seg


def _series_case(tmp_path, case, name="series"):
    """Write a phantom case as a DICOM series; returns (folder, label Volume on the series' grid)."""
    folder = write_dicom_series(case.image, tmp_path / name)
    scan = read_volume(folder)
    # write_dicom_series keeps the volume's voxel order, so the phantom's labels lie on the read grid
    assert np.allclose(scan.affine, case.image.affine, atol=1e-4)
    return folder, scan.with_array(case.label.array.astype(np.uint8))


def _expected_by_instance(folder, label_array):
    """Reference label slice per SOP instance from InstanceNumber (= array axis 2 + 1 in our writer)."""
    out = {}
    for path in _files(folder):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out[str(ds.SOPInstanceUID)] = label_array[:, :, int(ds.InstanceNumber) - 1].T
    return out


def test_phantom_series_round_trip_codes_and_references(tmp_path, tiny_case):
    folder, labels = _series_case(tmp_path, tiny_case)
    settings = SegSettings(model_sha256=SHA, model_name="best.pt", series_description="liver AI", series_number=77)
    result = write_dicom_seg(labels, folder, tmp_path / "case_seg.dcm", settings=settings)
    assert result.segments == ("Liver", "Liver tumor") and result.warnings == ()
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in _files(folder)]
    seg = _check_references(result.path, sources)
    got = _readback(result.path, sources)
    for uid, expected in _expected_by_instance(folder, labels.array).items():
        np.testing.assert_array_equal(got[uid], expected)
    assert seg.SeriesDescription == "liver AI" and int(seg.SeriesNumber) == 77
    liver, tumor = seg.SegmentSequence
    assert liver.SegmentLabel == "Liver" and tumor.SegmentLabel == "Liver tumor"
    assert [liver.SegmentedPropertyCategoryCodeSequence[0].CodeValue,
            liver.SegmentedPropertyTypeCodeSequence[0].CodeValue] == ["123037004", "10200004"]
    assert [tumor.SegmentedPropertyCategoryCodeSequence[0].CodeValue,
            tumor.SegmentedPropertyTypeCodeSequence[0].CodeValue,
            tumor.AnatomicRegionSequence[0].CodeValue] == ["49755003", "108369006", "10200004"]
    for segment in (liver, tumor):
        assert segment.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
        algo = segment.SegmentationAlgorithmIdentificationSequence[0]
        assert algo.AlgorithmName == "medseg" and algo.AlgorithmVersion
        assert algo.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
        assert algo.AlgorithmParameters == f"checkpoint_sha256={SHA}"


def test_frames_follow_the_slice_normal_not_file_names(tmp_path, tiny_case):
    folder, labels = _series_case(tmp_path, tiny_case)
    files = _files(folder)
    for i, path in enumerate(files):  # shuffle names against positions and drop the instance numbers' order
        path.rename(folder / f"tmp_{(i * 7) % len(files):04d}.dcm")
    result = write_dicom_seg(labels, folder, tmp_path / "seg.dcm")
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in _files(folder)]
    seg = pydicom.dcmread(result.path)
    iop = np.array([float(v) for v in sources[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    along = [float(np.dot([float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient], normal))
             for f in seg.PerFrameFunctionalGroupsSequence]
    segment_of = [int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
                  for f in seg.PerFrameFunctionalGroupsSequence]
    for number in (1, 2):
        positions = [a for a, s in zip(along, segment_of) if s == number]
        steps = np.diff(positions)  # monotonic along the normal (highdicom orders planes by it)
        assert len(positions) > 1 and (np.all(steps > 0) or np.all(steps < 0))
    got = _readback(result.path, sources)
    for uid, expected in _expected_by_instance(folder, labels.array).items():
        np.testing.assert_array_equal(got[uid], expected)


def test_oblique_series(tmp_path):
    case = make_phantom(size="tiny", seed=5, index=1)
    angle = np.deg2rad(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    tilt = np.array([[1, 0, 0], [0, np.cos(angle / 2), -np.sin(angle / 2)], [0, np.sin(angle / 2), np.cos(angle / 2)]])
    affine = case.image.affine.copy()
    affine[:3, :3] = tilt @ rotation @ affine[:3, :3]
    image = Volume(case.image.array, affine)
    folder = write_dicom_series(image, tmp_path / "oblique")
    scan = read_volume(folder)
    labels = scan.with_array(case.label.array.astype(np.uint8))
    result = write_dicom_seg(labels, folder, tmp_path / "seg.dcm")
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in _files(folder)]
    _check_references(result.path, sources)
    seg = pydicom.dcmread(result.path)
    orientation = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    np.testing.assert_allclose([float(v) for v in orientation],
                               [float(v) for v in sources[0].ImageOrientationPatient], atol=1e-6)
    got = _readback(result.path, sources)
    for uid, expected in _expected_by_instance(folder, labels.array).items():
        np.testing.assert_array_equal(got[uid], expected)


def test_tumor_free_case_has_the_liver_segment(tmp_path, tiny_case):
    folder, labels = _series_case(tmp_path, tiny_case)
    liver_only = labels.with_array(np.where(labels.array > 0, 1, 0).astype(np.uint8))
    result = write_dicom_seg(liver_only, folder, tmp_path / "seg.dcm")
    assert result.segments == ("Liver",)
    assert any("no tumor" in w for w in result.warnings)
    seg = hd.seg.segread(result.path)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Liver"]
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in _files(folder)]
    got = _readback(result.path, sources)
    for uid, expected in _expected_by_instance(folder, liver_only.array).items():
        np.testing.assert_array_equal(got[uid], expected)
    with pytest.raises(EmptySegmentationError, match="nothing segmented"):
        write_dicom_seg(labels.with_array(np.zeros(labels.shape, np.uint8)), folder, tmp_path / "empty.dcm")
    assert not (tmp_path / "empty.dcm").exists()


def _square_labels(scan: Volume) -> Volume:
    """Liver = a block in the middle of the slice, tumor = a smaller block inside it (array axes 0, 1)."""
    labels = np.zeros(scan.shape, np.uint8)
    x, y = scan.shape[0], scan.shape[1]
    labels[x // 4: 3 * x // 4, y // 3: 2 * y // 3] = 1
    labels[x // 2: x // 2 + 5, y // 2 - 3: y // 2 + 4] = 2
    return scan.with_array(labels)


@pytest.mark.parametrize("name", ["CT_small.dcm", "693_J2KR.dcm"])
def test_real_files_uncompressed_and_jpeg2000(tmp_path, name):
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} (pydicom-data) not installed")
    source = tmp_path / name
    shutil.copy(path, source)
    scan = read_volume(source)
    labels = _square_labels(scan)
    result = write_dicom_seg(labels, source, tmp_path / "seg.dcm")
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    _check_references(result.path, [ds])
    assert ("FrameOfReferenceUID" in ds) != any("FrameOfReferenceUID" in w for w in result.warnings)
    got = _readback(result.path, [ds])
    np.testing.assert_array_equal(got[str(ds.SOPInstanceUID)], labels.array[:, :, 0].T)


def test_jpeg_ls_series(tmp_path, tiny_case):
    folder, labels = _series_case(tmp_path, tiny_case)
    for path in _files(folder):
        ds = pydicom.dcmread(path)
        ds.compress(pydicom.uid.JPEGLSLossless)
        ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(_files(folder)[0]).file_meta.TransferSyntaxUID == pydicom.uid.JPEGLSLossless
    scan = read_volume(folder)
    np.testing.assert_array_equal(scan.array, tiny_case.image.array)
    result = write_dicom_seg(scan.with_array(labels.array), folder, tmp_path / "seg.dcm")
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in _files(folder)]
    got = _readback(result.path, sources)
    for uid, expected in _expected_by_instance(folder, labels.array).items():
        np.testing.assert_array_equal(got[uid], expected)


def test_blanked_uids_reference_what_is_left(tmp_path, tiny_case):
    folder, labels = _series_case(tmp_path, tiny_case)
    meta_uids = {}
    for path in _files(folder):
        ds = pydicom.dcmread(path)
        meta_uids[path.name] = str(ds.file_meta.MediaStorageSOPInstanceUID)
        ds.StudyInstanceUID = ds.SeriesInstanceUID = ds.SOPInstanceUID = ""
        ds.save_as(path)
    before = {p.name: p.read_bytes() for p in _files(folder)}
    scan = read_volume(folder)
    result = write_dicom_seg(scan.with_array(labels.array), folder, tmp_path / "seg.dcm")
    assert {p.name: p.read_bytes() for p in _files(folder)} == before  # inputs untouched
    text = " ".join(result.warnings)
    assert "SOPInstanceUID" in text and "StudyInstanceUID" in text and "SeriesInstanceUID" in text
    seg = pydicom.dcmread(result.path)
    refs = {str(r.ReferencedSOPInstanceUID) for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert refs == set(meta_uids.values())
    assert seg.StudyInstanceUID  # a made-up but valid study
    # with the file meta blank too, nothing references the slices: one line, no SEG
    for path in _files(folder):
        ds = pydicom.dcmread(path)
        ds.file_meta.MediaStorageSOPInstanceUID = ""
        ds.save_as(path)
    with pytest.raises(DataError, match="no SOPInstanceUID") as info:
        write_dicom_seg(scan.with_array(labels.array), folder, tmp_path / "seg2.dcm")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "seg2.dcm").exists()


def test_label_map_off_the_source_grid_is_one_line(tmp_path, tiny_case):
    folder, labels = _series_case(tmp_path, tiny_case)
    shifted = labels.affine.copy()
    shifted[:3, 3] += 3.3
    with pytest.raises(DataError, match="not a slice of the label map's grid"):
        write_dicom_seg(Volume(labels.array, shifted, labels.meta), folder, tmp_path / "seg.dcm")


def test_enhanced_multiframe_ct_source(tmp_path):
    path = get_testdata_file("eCT_Supplemental.dcm")
    if path is None:
        pytest.skip("pydicom-data's eCT_Supplemental.dcm is not installed")
    source = tmp_path / "ect.dcm"
    shutil.copy(path, source)
    scan = read_volume(source)
    labels = _square_labels(scan)
    labels.array[:, :, 0] = np.where(labels.array[:, :, 0] == 2, 1, labels.array[:, :, 0])  # tumor on slice 1 only
    result = write_dicom_seg(labels, source, tmp_path / "seg.dcm")
    ds = pydicom.dcmread(source)
    seg = hd.seg.segread(result.path)
    pixels = seg.get_pixels_by_source_frame(str(ds.SOPInstanceUID), source_frame_numbers=[1, 2],
                                            segment_numbers=[1, 2], combine_segments=False,
                                            ignore_spatial_locations=True)
    corners = scan.world_coordinates(np.array([[0, 0, k] for k in range(scan.shape[2])]))
    for f, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        ras = np.array([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]) * [-1, -1, 1]
        k = int(np.argmin(np.linalg.norm(corners - ras, axis=1)))  # the scan slice at this frame's position
        np.testing.assert_array_equal(pixels[f].astype(np.uint8).sum(axis=-1), labels.array[:, :, k].T)
