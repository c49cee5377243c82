"""write_dicom_series: stored values, rescale and geometry tags read back with pydicom; refusals."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from medseg.errors import DataError
from medseg.io import Volume, write_dicom_series

# RAS affine: 0.7 mm along -x (so +0.7 along L), 0.8 mm along y, 2.5 mm along z, origin (10, 20, -30)
AFFINE = np.array([[-0.7, 0, 0, 10.0], [0, 0.8, 0, 20.0], [0, 0, 2.5, -30.0], [0, 0, 0, 1]])


def _slices(folder):
    return sorted((pydicom.dcmread(p) for p in folder.iterdir()), key=lambda ds: int(ds.InstanceNumber))


def test_values_rescale_and_geometry_tags(tmp_path):
    array = np.array([[[-1024, 0, 500]] * 3] * 2, dtype=np.int16)  # (2, 3, 3): three slices
    slices = _slices(write_dicom_series(Volume(array, AFFINE), tmp_path / "ct", series_uid="1.2.3"))
    assert len(slices) == 3 and {ds.SeriesInstanceUID for ds in slices} == {"1.2.3"}
    first = slices[0]
    assert (first.RescaleIntercept, first.RescaleSlope, first.PixelRepresentation) == (-1024, 1, 0)
    assert first.pixel_array.shape == (3, 2)  # rows follow array axis 1, columns axis 0
    assert [int(ds.pixel_array[0, 0]) for ds in slices] == [0, 1024, 1524]  # HU + 1024, uint16
    # LPS: x flips sign, y flips sign; slice k sits k * 2.5 mm along z
    assert [float(v) for v in first.ImagePositionPatient] == pytest.approx([-10.0, -20.0, -30.0])
    assert [float(v) for v in slices[2].ImagePositionPatient] == pytest.approx([-10.0, -20.0, -25.0])
    assert [float(v) for v in first.ImageOrientationPatient] == pytest.approx([1, 0, 0, 0, -1, 0])
    assert [float(v) for v in first.PixelSpacing] == pytest.approx([0.8, 0.7])  # row spacing, column spacing


def test_values_below_minus_1024_are_stored_signed(tmp_path):
    array = np.full((2, 2, 1), -2000, dtype=np.int16)
    (ds,) = _slices(write_dicom_series(Volume(array, AFFINE), tmp_path / "ct"))
    assert (ds.RescaleIntercept, ds.PixelRepresentation) == (0, 1) and int(ds.pixel_array[0, 0]) == -2000


def test_write_refuses_non_empty_folder_and_fractional_values(tmp_path, tiny_case):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="must not exist or be empty"):
        write_dicom_series(tiny_case.image, tmp_path / "out")
    half = tiny_case.image.with_array(tiny_case.image.array + 0.5)
    with pytest.raises(DataError, match="integer HU"):
        write_dicom_series(half, tmp_path / "new")
    assert not (tmp_path / "new").exists()
