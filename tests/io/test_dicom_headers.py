"""Header checks before any pixel is decoded: one slice of a series, declared pixel data the file lacks."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from medseg.errors import DataError
from medseg.io import Volume, write_dicom_series
from medseg.io.dicom_headers import check_not_part_of_series, check_pixel_bytes


@pytest.fixture
def series(tmp_path):
    array = np.zeros((4, 3, 3), np.int16)  # three slices of 3 rows x 4 columns
    return write_dicom_series(Volume(array, np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "series")


def test_one_slice_of_a_series_is_refused_alone(series, tmp_path):
    files = sorted(series.iterdir())
    with pytest.raises(DataError, match=r"one slice of a 3-file DICOM series \(.+\); pass the folder"):
        check_not_part_of_series(files[0])
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "slice.dcm").write_bytes(files[0].read_bytes())
    (alone / "notes.txt").write_text("not DICOM")
    check_not_part_of_series(alone / "slice.dcm")  # nothing else of its series beside it


def test_pixel_bytes_declared_against_file_size(series):
    path = sorted(series.iterdir())[0]
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    check_pixel_bytes(path, ds)  # 3 x 4 x 16 bits = 24 bytes: the file holds them
    ds.Rows = 3000
    with pytest.raises(DataError, match=r"pixel data shorter than declared: 3000 rows x 4 columns x 1 frame\(s\) "
                                        r"at 16 bits need 24000 bytes, the file has \d+"):
        check_pixel_bytes(path, ds)
    ds.Rows = 0
    with pytest.raises(DataError, match=r"invalid image size \(Rows 0, Columns 4, 1 frame\(s\)\)"):
        check_pixel_bytes(path, ds)


def test_unreadable_header_is_one_line(tmp_path):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not a DICOM file at all")
    with pytest.raises(DataError, match=r"bad\.dcm: unreadable DICOM file"):
        check_not_part_of_series(bad)
