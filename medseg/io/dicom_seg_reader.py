"""DICOM Segmentation (SEG) objects as LiTS label maps, read with highdicom.

A SEG from a PACS, 3D Slicer or another AI tool holds numbered *segments*, each with a label and a coded
property type. Segments become liver or tumor:

* by code (default): SNOMED CT 10200004 "Liver" is liver; 108369006 "Neoplasm" and the neoplasm concepts
  below it that segmentations use (:data:`NEOPLASM_CODES`; the SNOMED hierarchy itself is not available
  offline) are tumor;
* else by segment label: ``liver`` is liver; a label naming a tumor, tumour, lesion, neoplasm, metastasis,
  carcinoma or HCC is tumor (so medseg's own "Liver tumor" segment is tumor, not liver);
* or explicitly, ``labels=LabelMapping.parse(['liver="Liver"', "tumor=3"])`` (``--labels``): a string is a
  segment label (case-insensitive), an integer a segment number.

Segments may overlap (medseg writes the tumor inside the liver segment); tumor wins. Other segments are
ignored. Fractional segments count where the fraction is at least 0.5.

Geometry comes from the SEG's own frames (highdicom's ``get_volume``: plane positions, orientation,
pixel measures), converted from LPS to RAS. A SEG usually stores only the frames holding a segment, so its
volume is a sub-box of the referenced series: given ``like`` (the scan, or the prediction it is compared
with), the SEG is placed voxel for voxel onto that grid (:func:`medseg.io.orientation.place_on_grid`).
Its Frame of Reference must then be the scan's when both are known.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from medseg.errors import DataError
from medseg.io.dicom_codes import LIVER as LIVER_CODE
from medseg.io.dicom_codes import NEOPLASM as NEOPLASM_CODE
from medseg.io.label_map import LabelMapping
from medseg.io.orientation import describe_geometry, place_on_grid
from medseg.io.volume import Volume
from medseg.labels import LIVER, TUMOR

__all__ = ["NEOPLASM_CODES", "RTSTRUCT_SOP_CLASS", "SEG_SOP_CLASS", "is_dicom_seg", "read_dicom_seg", "sop_class"]

logger = logging.getLogger(__name__)

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"

#: SNOMED CT codes read as tumor: Neoplasm and the neoplasm concepts under it used for liver lesions.
NEOPLASM_CODES = {
    NEOPLASM_CODE.value: "Neoplasm",
    "86049000": "Malignant neoplasm, primary",
    "14799000": "Neoplasm, metastatic",
    "3898006": "Neoplasm, benign",
    "126851005": "Neoplasm of liver",
    "93870000": "Malignant neoplasm of liver",
    "94381002": "Secondary malignant neoplasm of liver",
    "25370001": "Hepatocellular carcinoma",
    "363346000": "Malignant neoplastic disease",
    "4147007": "Mass",
}

_TUMOR_WORDS = re.compile(r"tumou?r|lesion|neoplasm|metasta|carcinoma|\bhcc\b|cancer", re.IGNORECASE)


def sop_class(path: str | os.PathLike) -> str | None:
    """SOPClassUID of a DICOM file (from its file meta, without reading pixels), ``None`` if unreadable."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # not DICOM / unreadable: the caller's reader reports it
        return None
    meta = getattr(ds, "file_meta", None)
    uid = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
    return None if uid is None else str(uid)


def is_dicom_seg(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a DICOM Segmentation Storage file."""
    from medseg.io.dicom import is_dicom_file

    return is_dicom_file(path) and sop_class(path) == SEG_SOP_CLASS


def read_dicom_seg(path: str | os.PathLike, *, labels: LabelMapping | None = None,
                   like: Volume | None = None) -> Volume:
    """Read a DICOM SEG as a ``uint8`` LiTS label map (0 background, 1 liver, 2 tumor).

    Args:
        path: The SEG file.
        labels: Explicit segment mapping (labels or numbers); ``None``: by code, then by label (module
            docstring).
        like: A volume whose grid the result is placed on (the scan or the other label map).

    Returns:
        A :class:`Volume`; ``meta`` has ``format`` ``"dicom-seg"``, ``label_mapping`` (which segments
        were read as liver and tumor), ``segments`` (number -> label) and ``frame_of_reference_uid``.

    Raises:
        DataError: Not a readable SEG, no segment maps to liver or tumor, a mapped segment is missing, or
            the SEG does not lie on ``like``'s grid.
    """
    path = Path(path)
    seg = _segread(path)
    segments = _segments(seg)
    chosen = _choose_segments(segments, labels, path)
    used = sorted({n for numbers in chosen.values() for n in numbers})
    volume = _volume(seg, used, path)
    values = np.asarray(volume.array).reshape(*volume.array.shape[:3], len(used))
    array = np.zeros(values.shape[:3], dtype=np.uint8)
    for region, value in (("liver", LIVER), ("tumor", TUMOR)):
        for number in chosen[region]:
            array[values[..., used.index(number)] >= 0.5] = value
    mapping = {region: [f"{n} {segments[n][0]}" for n in chosen[region]] for region in ("liver", "tumor")}
    meta = {"path": str(path), "format": "dicom-seg", "modality": "SEG",
            "label_mapping": {**mapping, "explicit": labels is not None},
            "segments": {str(n): label for n, (label, _) in segments.items()},
            "frame_of_reference_uid": str(seg.get("FrameOfReferenceUID", "")),
            "series_uid": str(seg.get("SeriesInstanceUID", ""))}
    result = _as_volume(array, volume, meta)
    return result if like is None else _place(result, like, path)


def _segread(path: Path):
    import highdicom as hd

    if not path.is_file():
        raise DataError("no such file", path=path)
    try:
        return hd.seg.segread(path)
    except Exception as exc:  # highdicom/pydicom raise many types for a broken or foreign file
        text = str(exc).strip().splitlines()
        raise DataError(f"unreadable DICOM SEG ({type(exc).__name__}: {text[0][:200] if text else ''})",
                        path=path) from None


def _segments(seg) -> dict[int, tuple[str, str]]:
    """Segment number -> (label, SNOMED/DCM code value of the property type)."""
    out = {}
    for item in seg.SegmentSequence:
        codes = item.get("SegmentedPropertyTypeCodeSequence") or []
        out[int(item.SegmentNumber)] = (str(item.get("SegmentLabel", "")), str(codes[0].CodeValue) if codes else "")
    return out


def _default_region(label: str, code: str) -> str | None:
    if code == LIVER_CODE.value:
        return "liver"
    if code in NEOPLASM_CODES or _TUMOR_WORDS.search(label):
        return "tumor"
    if label.strip().lower() == "liver":
        return "liver"
    return None


def _choose_segments(segments: dict[int, tuple[str, str]], labels: LabelMapping | None,
                     path: Path) -> dict[str, list[int]]:
    listing = "; ".join(f"{n} {label!r} (code {code or '-'})" for n, (label, code) in segments.items())
    chosen: dict[str, list[int]] = {"liver": [], "tumor": []}
    if labels is None:
        for number, (label, code) in segments.items():
            region = _default_region(label, code)
            if region:
                chosen[region].append(number)
        if not (chosen["liver"] or chosen["tumor"]):
            raise DataError(f"no segment is liver (SNOMED 10200004) or tumor (Neoplasm 108369006...) by code or "
                            f"label; segments: {listing}; choose them with --labels liver=\"LABEL\" "
                            "tumor=\"LABEL\"", path=path)
        return chosen
    by_label = {label.strip().lower(): n for n, (label, _) in segments.items()}
    for region in ("liver", "tumor"):
        for entry in getattr(labels, region):
            number = entry if isinstance(entry, int) else by_label.get(entry.strip().lower())
            if number not in segments:
                raise DataError(f"--labels {region}={entry!r}: no such segment; segments: {listing}", path=path)
            chosen[region].append(number)
    return chosen


def _volume(seg, numbers: list[int], path: Path):
    """highdicom volume of the chosen segments: ``(slices, rows, columns, segments)``, LPS affine."""
    try:
        return seg.get_volume(segment_numbers=numbers, combine_segments=False, allow_missing_positions=True)
    except Exception as exc:  # irregular frames, missing plane positions, ...
        text = str(exc).strip().splitlines()
        raise DataError(f"DICOM SEG frames do not form one regular volume ({text[0][:200] if text else exc})",
                        path=path) from None


def _as_volume(array: np.ndarray, volume, meta: dict) -> Volume:
    """highdicom ``(slice, row, column)`` LPS geometry -> medseg ``(column, row, slice)`` RAS Volume."""
    lps = np.asarray(volume.affine, dtype=float)
    to_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps[:, [2, 1, 0, 3]]
    return Volume(array=np.ascontiguousarray(array.transpose(2, 1, 0)), affine=to_ras, meta=meta)


def _place(result: Volume, like: Volume, path: Path) -> Volume:
    frame, other = result.meta.get("frame_of_reference_uid"), like.meta.get("frame_of_reference_uid")
    if frame and other and frame != other:
        raise DataError(f"DICOM SEG frame of reference {frame} is not the one of {like.meta.get('path', 'the scan')} "
                        f"({other})", path=path)
    placed = place_on_grid(result, like)
    if placed is None:
        raise DataError(f"DICOM SEG frames ({describe_geometry(result)}) do not lie on the grid of "
                        f"{like.meta.get('path', 'the scan')} ({describe_geometry(like)})", path=path)
    return placed
