"""read_volume / write_volume: one entry point that picks the reader from what is on disk."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import DataError
from medseg.io import Volume, read_volume, write_volume
from medseg.io.dicom_writer import write_dicom_series

AFFINE = np.array([[-0.8, 0, 0, 10.0], [0, -0.8, 0, 20.0], [0, 0, 2.5, -30.0], [0, 0, 0, 1]])


@pytest.fixture
def scan():
    array = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3) * 10 - 200
    return Volume(array, AFFINE.copy())


def test_nifti_file_and_dicom_folder_read_the_same_scan(scan, tmp_path):
    nifti = write_volume(scan, tmp_path / "scan.nii.gz")
    folder = write_dicom_series(scan, tmp_path / "series")
    from_nifti, from_dicom = read_volume(nifti), read_volume(folder)
    np.testing.assert_array_equal(from_nifti.array, scan.array)
    np.testing.assert_allclose(from_nifti.affine, AFFINE, atol=1e-6)
    np.testing.assert_array_equal(from_dicom.array, scan.array)  # a folder is read as one DICOM series
    np.testing.assert_allclose(from_dicom.affine, AFFINE, atol=1e-4)


def test_label_maps_are_written_as_uint8(scan, tmp_path):
    labels = scan.with_array((scan.array > 0).astype(np.int64))
    read = read_volume(write_volume(labels, tmp_path / "seg.nii.gz", label=True))
    assert read.array.dtype == np.uint8
    np.testing.assert_array_equal(read.array, scan.array > 0)


def test_missing_and_unsupported_inputs(tmp_path):
    with pytest.raises(DataError, match=r"nope\.nii\.gz: no such file or folder"):
        read_volume(tmp_path / "nope.nii.gz")
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    with pytest.raises(DataError, match=r"notes\.txt: unsupported file type \(expected \.nii, \.nii\.gz"):
        read_volume(notes)
