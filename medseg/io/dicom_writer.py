"""Write a Volume as a DICOM CT series (pydicom), so that :func:`medseg.io.dicom.read_dicom_series` reads it back.

Used to convert phantoms or predictions for DICOM viewers and to test the DICOM reader. Geometry: the RAS
affine is converted to LPS; array axes 0 and 1 are the row and column directions of every slice
(ImageOrientationPatient), axis 2 steps ImagePositionPatient from slice to slice and sets InstanceNumber.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medseg.errors import DataError
from medseg.io.volume import Volume
from medseg.utils.atomic import atomic_dir

__all__ = ["write_dicom_series"]

_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def write_dicom_series(
    volume: Volume,
    folder: str | os.PathLike,
    *,
    series_uid: str | None = None,
    description: str = "medseg",
    patient_id: str = "anonymous",
) -> Path:
    """Write ``volume`` as a CT Image Storage series, one file per slice along array axis 2.

    Stored values are ``HU + 1024`` as uint16 with RescaleIntercept -1024 (signed int16 with intercept 0
    when values fall outside -1024..64511). ImagePositionPatient / ImageOrientationPatient / PixelSpacing
    encode the volume's affine (converted to LPS) and InstanceNumber follows array axis 2, so
    :func:`read_dicom_series` gives back the same array and affine. The series is written to a temporary
    folder beside ``folder`` (:func:`medseg.utils.atomic.atomic_dir`: umask mode, fsync'ed) and renamed when complete.

    Args:
        volume: ``(X, Y, Z)`` integer-valued HU volume; in-plane axes 0 and 1 must be orthogonal.
        folder: Output folder; must not exist or be empty.
        series_uid: SeriesInstanceUID (a new one when ``None``).
        description: SeriesDescription.
        patient_id: PatientID and PatientName.

    Returns:
        ``folder``.
    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise DataError("output folder for a DICOM series must not exist or be empty", path=folder)
    array = np.asarray(volume.array)
    if array.ndim != 3:
        raise DataError(f"expected a 3D volume, got shape {array.shape}", path=folder)
    if not np.issubdtype(array.dtype, np.integer) and not np.array_equal(array, np.round(array)):
        raise DataError("DICOM output needs integer HU values", path=folder)
    lo, hi = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if lo >= -1024 and hi <= 65535 - 1024:
        stored, intercept, signed = (array.astype(np.int32) + 1024).astype(np.uint16), -1024, 0
    elif lo >= -32768 and hi <= 32767:
        stored, intercept, signed = array.astype(np.int16), 0, 1
    else:
        raise DataError(f"values {lo:g}..{hi:g} do not fit 16-bit DICOM", path=folder)
    lps = _LPS_RAS @ volume.affine
    spacing = np.asarray(volume.spacing_mm)
    row_dir, col_dir = lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]
    if abs(float(row_dir @ col_dir)) > 1e-4:
        raise DataError("in-plane axes are not orthogonal; DICOM cannot store this geometry", path=folder)
    from pydicom.uid import generate_uid

    series_uid = series_uid or generate_uid()
    study_uid, frame_uid = generate_uid(), generate_uid()
    with atomic_dir(folder) as tmp:
        for k in range(array.shape[2]):
            ds = _ct_slice(stored[:, :, k].T, signed, intercept)
            ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID = series_uid, study_uid, frame_uid
            ds.SeriesDescription, ds.PatientID, ds.PatientName = description, patient_id, patient_id
            ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
            ds.ImagePositionPatient = _ds_list(lps[:3, 3] + k * lps[:3, 2])
            ds.ImageOrientationPatient = _ds_list(np.concatenate([row_dir, col_dir]))
            ds.PixelSpacing = _ds_list([spacing[1], spacing[0]])  # [between rows, between columns]
            ds.SliceThickness = _ds_list([spacing[2]])[0]
            ds.save_as(tmp / f"slice_{k + 1:04d}.dcm", enforce_file_format=True)
    return folder


def _ct_slice(pixels: np.ndarray, signed: int, intercept: int):
    """A CT Image Storage dataset holding one slice, ``(rows, columns)`` stored values."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.ImageType = "CT", ["DERIVED", "SECONDARY", "AXIAL"]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, signed
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = str(intercept), "1", "HU"
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def _ds_list(values) -> list[str]:
    """Decimal strings of at most 16 characters (the DS limit), as precise as that allows."""
    out = []
    for v in values:
        v = 0.0 if abs(float(v)) < 1e-12 else float(v)
        for digits in range(15, 0, -1):
            text = f"{v:.{digits}g}"
            if len(text) <= 16:
                break
        out.append(text)
    return out
