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


def _deflated_twin(path, out):
    """``path`` re-written by pydicom in Deflated Explicit VR Little Endian (1.2.840.10008.1.2.1.99)."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(out, enforce_file_format=True)
    return out


def test_deflated_dicom_is_measured_after_inflation(tmp_path):
    """Issue #29.14: a valid deflated slice (a smooth 256 x 256 int16 image: 131,072 pixel bytes in a file of
    a few kB) was refused as truncated; it reads the values of its uncompressed twin, slice and series alike.
    A deflated file cut short is still refused, and so is one declaring more pixels than its stream inflates to."""
    from medseg.io import read_volume

    x, y = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    array = ((x + 2 * y) % 300 - 1000).astype(np.int16)[:, :, None]  # (X, Y, Z): one slice
    plain = write_dicom_series(Volume(array, np.diag([0.7, 0.7, 2.5, 1.0])), tmp_path / "plain")
    source = sorted(plain.iterdir())[0]
    (tmp_path / "deflated").mkdir()
    deflated = _deflated_twin(source, tmp_path / "deflated" / "slice.dcm")
    assert deflated.stat().st_size < 131072 < source.stat().st_size  # compressed below the pixel bytes
    syntax = pydicom.dcmread(deflated, stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert str(syntax) == "1.2.840.10008.1.2.1.99"
    for read in (lambda p: read_volume(p), lambda p: read_volume(p.parent)):  # the file, then its folder
        twin, got = read(source), read(deflated)
        np.testing.assert_array_equal(got.array, twin.array)
        np.testing.assert_array_equal(got.array[:, :, 0], array[:, :, 0])
        np.testing.assert_allclose(got.affine, twin.affine)
    ds = pydicom.dcmread(deflated, stop_before_pixels=True)
    ds.Rows = 4096  # 2 MB declared; the stream inflates to ~132 kB
    with pytest.raises(DataError, match=r"pixel data shorter than declared: 4096 rows x 256 columns .* need 2097152 "
                                        r"bytes, the file inflates to \d+"):
        check_pixel_bytes(deflated, ds)
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(deflated.read_bytes()[: deflated.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut\.dcm: "):
        read_volume(cut)
