"""``read_volume`` / ``write_volume``: one entry point for every supported CT format; ``read_label_map``:
the same for label maps, checked and mapped to LiTS labels (:mod:`medseg.io.label_map`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from medseg.errors import DataError
from medseg.io.label_map import LabelMapping, apply_label_mapping
from medseg.io.nifti import is_nifti, read_nifti, write_nifti
from medseg.io.orientation import align_to
from medseg.io.volume import Volume

__all__ = ["read_label_map", "read_volume", "write_volume"]


def read_volume(path: str | os.PathLike, *, series_uid: str | None = None) -> Volume:
    """Read a CT scan or label map into a :class:`Volume`.

    Args:
        path: A ``.nii``/``.nii.gz`` file, a DICOM file (single-frame or enhanced multi-frame), or a
            folder holding one DICOM series.
        series_uid: For a folder with several series, the SeriesInstanceUID to read (``""`` or
            ``"<no uid>"`` chooses the series whose files have none).

    Raises:
        DataError: Unreadable input, with the path and the problem in one line; a DICOM SEG or RTSTRUCT
            (not an image: read SEG label maps with :func:`read_label_map`); one
            slice file of a series whose other files are in the same folder (pass the folder).
    """
    path = Path(path)
    if not path.exists():
        raise DataError("no such file or folder", path=path)
    if path.is_dir():
        from medseg.io.dicom import read_dicom_series

        return read_dicom_series(path, series_uid=series_uid)
    if is_nifti(path):
        return read_nifti(path)
    from medseg.io.dicom import is_dicom_file, read_dicom_file

    if is_dicom_file(path):
        from medseg.io.dicom import check_not_part_of_series

        _refuse_non_image(path)
        check_not_part_of_series(path)
        return read_dicom_file(path)
    raise DataError("unsupported file type (expected .nii, .nii.gz, a DICOM file or a DICOM folder)", path=path)


def _refuse_non_image(path: Path) -> None:
    from medseg.io.dicom_seg_reader import RTSTRUCT_SOP_CLASS, SEG_SOP_CLASS, sop_class

    kind = {SEG_SOP_CLASS: "a DICOM SEG (segmentation)", RTSTRUCT_SOP_CLASS: "a DICOM RTSTRUCT (contours)"}
    found = kind.get(sop_class(path) or "")
    if found:
        use = ("use it as a label map or reference (medseg volumes / evaluate --ref)" if "SEG" in found
               else "convert it to a DICOM SEG or NIfTI label map first")
        raise DataError(f"{found}, not a CT image; {use}", path=path)


def write_volume(volume: Volume, path: str | os.PathLike, *, label: bool = False) -> Path:
    """Write ``volume`` atomically; ``label=True`` writes a ``uint8`` label map.

    Only NIfTI output is supported (``.nii`` or ``.nii.gz``); use
    :func:`medseg.io.dicom.write_dicom_series` to write a DICOM series.
    """
    return write_nifti(volume, path, label=label)


def read_label_map(
    path: str | os.PathLike,
    *,
    labels: LabelMapping | Sequence[str] | Mapping | str | None = None,
    like: Volume | None = None,
    series_uid: str | None = None,
) -> Volume:
    """Read a label map (NIfTI, DICOM SEG, or a DICOM folder) as a LiTS label map, checked and mapped.

    Args:
        path: The label map file (or folder).
        labels: A :class:`LabelMapping` or what :meth:`LabelMapping.parse` takes; ``None``: LiTS values.
            DICOM SEG segments map by code/label by default (see :mod:`medseg.io.dicom_seg_reader`).
        like: A volume (the scan, or the other label map) whose grid the result must share; the map is
            flipped/transposed onto its voxel order when it is the same grid stored differently (a DICOM
            SEG is placed on it frame by frame).
        series_uid: For a DICOM folder holding several series.

    Returns:
        A ``uint8`` :class:`Volume` with values 0, 1, 2; ``meta["label_mapping"]`` records the mapping.

    Raises:
        DataError: Unreadable file, bad values, or a grid that differs from ``like``'s.
    """
    from medseg.io.dicom_seg_reader import is_dicom_seg, read_dicom_seg

    path = Path(path)
    mapping = LabelMapping.parse(labels)
    if path.is_file() and is_dicom_seg(path):
        return read_dicom_seg(path, labels=mapping if mapping.explicit else None, like=like)
    volume = read_volume(path, series_uid=series_uid)
    array = apply_label_mapping(volume.array, mapping, path=path)
    volume = volume.with_array(array, label_mapping=mapping.to_json())
    return volume if like is None else align_to(volume, like)
