"""DICOM SEG as a label map: segments by code, by label or explicit; geometry from the SEG's frames."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.sr.codedict import codes

from medseg.errors import DataError
from medseg.io import read_dicom_series, read_label_map, read_volume
from medseg.io.dicom_seg_reader import is_dicom_seg, read_dicom_seg

from .conftest import write_seg


def test_seg_on_the_series_grid_equals_the_original_map(dicom_case):
    case, series, seg = dicom_case
    ct = read_dicom_series(series)
    assert is_dicom_seg(seg) and not is_dicom_seg(next(series.iterdir()))
    label = read_label_map(seg, like=ct)
    assert label.shape == ct.shape and np.allclose(label.affine, ct.affine)
    np.testing.assert_array_equal(label.array, case.label.array)  # spleen ignored, tumor inside the liver
    assert label.meta["label_mapping"] == {"liver": ["1 Liver"], "tumor": ["2 Liver tumor"], "explicit": False}


def test_seg_alone_keeps_its_frames_world_positions(dicom_case):
    case, _, seg = dicom_case
    own = read_dicom_seg(seg)
    # highdicom stores only frames with a segment: the liver's slices and the spleen's (10..13)
    occupied = sorted(set(np.flatnonzero(case.label.array.any(axis=(0, 1)))) | set(range(10, 14)))
    assert own.shape[2] == occupied[-1] - occupied[0] + 1
    z_own = own.affine[2, 2] * np.arange(own.shape[2]) + own.affine[2, 3]
    z_case = case.label.affine[2, 2] * np.array(occupied) + case.label.affine[2, 3]
    np.testing.assert_allclose(sorted(z_own)[0], z_case.min(), atol=1e-3)
    assert int(np.count_nonzero(own.array == 2)) == int(np.count_nonzero(case.label.array == 2))


def test_seg_segments_by_label_and_explicit(dicom_case, tmp_path):
    case, series, _ = dicom_case
    label = case.label.array
    generic = write_seg(series, [("Organ A", codes.SCT.Organ, label > 0), ("Findings", codes.SCT.Organ, label == 2)],
                        tmp_path / "generic.dcm")
    with pytest.raises(DataError, match=r"no segment is liver .* segments: 1 'Organ A' \(code"):
        read_label_map(generic)
    ct = read_volume(series)
    mapped = read_label_map(generic, labels=['liver="organ a"', "tumor=2"], like=ct)
    np.testing.assert_array_equal(mapped.array, label)
    assert mapped.meta["label_mapping"]["explicit"] is True
    with pytest.raises(DataError, match="--labels liver='Liver': no such segment"):
        read_label_map(generic, labels=["liver=Liver"])
    by_label = write_seg(series, [("liver", codes.SCT.Organ, label > 0), ("HCC lesion", codes.SCT.Organ, label == 2)],
                         tmp_path / "bylabel.dcm")
    np.testing.assert_array_equal(read_label_map(by_label, like=ct).array, label)


def test_seg_is_refused_as_a_ct(dicom_case):
    _, _, seg = dicom_case
    with pytest.raises(DataError, match=r"a DICOM SEG \(segmentation\), not a CT image"):
        read_volume(seg)
    with pytest.raises(DataError, match="no CT images, only 1 DICOM SEG file"):
        read_volume(seg.parent)


def test_seg_off_the_grid_is_refused(dicom_case):
    case, _, seg = dicom_case
    shifted = case.image.with_array(case.image.array)
    moved = shifted.affine.copy()
    moved[:3, 3] += 3.0
    from medseg.io import Volume

    with pytest.raises(DataError, match="do not lie on the grid"):
        read_label_map(seg, like=Volume(case.image.array, moved, {"path": "other.nii.gz"}))


def test_seg_of_another_frame_of_reference_is_refused(dicom_case, tmp_path):
    case, _, seg = dicom_case
    from medseg.io import write_dicom_series

    other = read_dicom_series(write_dicom_series(case.image, tmp_path / "rescan"))  # same grid, new frame UID
    with pytest.raises(DataError, match=r"frame of reference .* is not the one of"):
        read_label_map(seg, like=other)
