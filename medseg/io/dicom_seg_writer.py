"""Write a liver/tumor label map as a DICOM Segmentation (SEG) of its source CT series, with highdicom.

A SEG is what PACS, OHIF and 3D Slicer show over the original series: it references the source study,
series, frame of reference and every slice (SOP instance), so a viewer places it without resampling.
highdicom (Herrmann et al., J Digit Imaging 2022) builds and validates the IOD; what medseg adds is the
mapping from a :class:`~medseg.io.volume.Volume` on the scan's grid back to the source files, and the
handling of real exports:

* **Slice mapping.** Each source slice's ImagePositionPatient is mapped through the label map's affine to
  its slice index, so the frames are right whatever the file names, InstanceNumbers or storage order; the
  source slices are handed to highdicom sorted by their position along the slice normal
  (``row x column`` of ImageOrientationPatient), never by file name or z. A slice that does not fall on
  the label map's grid is an error. An enhanced multi-frame CT source keeps its frame order (highdicom
  maps SEG frames to source frames), each frame placed by its PlanePositionSequence.
* **Segments** (codes in :mod:`medseg.io.dicom_codes`): 1 "Liver" = labels {1, 2} (LiTS: the tumor is
  part of the liver), 2 "Liver tumor" = label 2; BINARY, overlapping, so the label map is liver + tumor.
  A tumor-free case gives a valid SEG with the liver segment only (and a warning); when nothing at all is
  segmented no SEG is written (:class:`EmptySegmentationError`, reported as a warning by ``predict``),
  because an empty SEG shows nothing in a viewer and some archives refuse it.
* **Compressed sources** (JPEG 2000, JPEG-LS, ...): only the headers are read (``stop_before_pixels``);
  the SEG itself is written uncompressed (explicit VR little endian).
* **Anonymised sources**: a blank SOPInstanceUID is taken from the file meta (MediaStorageSOPInstanceUID)
  when that holds one; a blank StudyInstanceUID, SeriesInstanceUID or FrameOfReferenceUID is replaced by a
  new UID in memory (the input files are never changed), with a warning that the SEG cannot be linked to
  the original study/series/frame of reference. A slice without any SOP instance UID cannot be referenced:
  :class:`~medseg.errors.DataError`, one line.
"""

from __future__ import annotations

import logging
import os
import warnings as warnings_module
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.errors import DataError
from medseg.io import dicom_codes as codes
from medseg.io.volume import Volume

__all__ = ["EmptySegmentationError", "SegResult", "SegSettings", "source_headers", "write_dicom_seg"]

logger = logging.getLogger(__name__)

_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_UID_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")
# Type 2 attributes that highdicom copies from the source; an export may omit them (then they stay empty)
_TYPE2_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
               "ReferringPhysicianName", "StudyID", "AccessionNumber")


class EmptySegmentationError(DataError):
    """The label map holds no liver and no tumor: there is nothing to put in a SEG."""


@dataclass(frozen=True)
class SegSettings:
    """What the SEG says about itself.

    Attributes:
        series_description: SeriesDescription of the SEG series.
        series_number: SeriesNumber of the SEG series.
        algorithm_version: Version of the algorithm (medseg's version by default).
        model_sha256: SHA-256 of the model checkpoint, stored as an algorithm parameter.
        model_name: Name of the model (checkpoint file or run), stored as the algorithm source.
        manufacturer_model_name: ManufacturerModelName of the SEG.
        training_data: What the model was trained on (one line), stored as an algorithm parameter so a
            PACS reader sees it (:func:`medseg.runs.provenance.describe_models`).
    """

    series_description: str = "medseg liver/tumor"
    series_number: int = 901
    algorithm_version: str = ""
    model_sha256: str = ""
    model_name: str = ""
    manufacturer_model_name: str = "medseg"
    training_data: str = ""


@dataclass(frozen=True)
class SegResult:
    """A written SEG: its path, the segments it holds, and warnings about its references."""

    path: Path
    segments: tuple[str, ...]
    warnings: tuple[str, ...]
    series_uid: str


def source_headers(source: str | os.PathLike, series_uid: str | None = None) -> list:
    """Headers (no pixel data) of the source series' images: ``source`` itself, or the files under it.

    Files are read once (hidden files and non-images skipped, as :func:`medseg.io.dicom.list_dicom_series`
    does); with several series in the folder, ``series_uid`` chooses one.
    """
    from medseg.io.dicom import is_dicom_file

    source = Path(source)
    if source.is_file():
        return [_read_header(source)]
    groups: dict[str, list] = {}
    for path in sorted(source.rglob("*")):
        if any(p.startswith(".") for p in path.relative_to(source).parts) or not path.is_file():
            continue
        if is_dicom_file(path) and "Rows" in (ds := _read_header(path)):
            groups.setdefault(str(ds.get("SeriesInstanceUID", "") or ""), []).append(ds)
    if series_uid is not None and series_uid in groups:
        return groups[series_uid]
    if len(groups) != 1:
        raise DataError(f"expected one DICOM series for the SEG, found {len(groups)}", path=source)
    return next(iter(groups.values()))


def write_dicom_seg(
    labels: Volume, source: str | os.PathLike, path: str | os.PathLike, *, settings: SegSettings | None = None
) -> SegResult:
    """Write ``labels`` (on the grid of the DICOM series at ``source``) as a DICOM SEG file at ``path``.

    Args:
        labels: ``(X, Y, Z)`` LiTS label map (0 background, 1 liver, 2 tumor) with the source's geometry,
            and voxel order, as :func:`medseg.io.read_volume` returns it for ``source``.
        source: The DICOM series folder (or single/multi-frame file) the scan was read from.
        path: Output ``.dcm`` file (written atomically).
        settings: :class:`SegSettings`.

    Returns:
        :class:`SegResult`.

    Raises:
        EmptySegmentationError: No liver and no tumor voxel.
        DataError: Source slices off the label map's grid, an unreferenceable slice, a highdicom refusal.
    """
    settings = settings or SegSettings()
    array = np.asarray(labels.array)
    liver, tumor = np.isin(array, (1, 2)), array == 2
    if not liver.any():
        raise EmptySegmentationError("nothing segmented (no liver, no tumor): no DICOM SEG written", path=source)
    datasets = source_headers(source, labels.meta.get("series_uid"))
    warnings = list(_repair_uids(datasets, Path(source)))
    datasets, frames = _frames_in_normal_order(datasets, labels, Path(source))
    datasets, frames, further = _segmented_range(datasets, frames, liver)
    masks = [liver]
    descriptions = [_segment(1, codes.LIVER_SEGMENT_LABEL, settings)]
    if tumor.any():
        masks.append(tumor)
        descriptions.append(_segment(2, codes.TUMOR_SEGMENT_LABEL, settings))
    else:
        warnings.append("no tumor found: the SEG holds the liver segment only")
    pixels = np.stack([np.stack([m[:, :, k].T for k in frames]) for m in masks], axis=-1).astype(np.uint8)
    seg = _build(datasets, pixels, descriptions, settings, Path(source), further)
    _save(seg, Path(path))
    for text in warnings:
        logger.warning("%s: %s", path, text)
    return SegResult(Path(path), tuple(d.SegmentLabel for d in descriptions), tuple(warnings),
                     str(seg.SeriesInstanceUID))


def _segmented_range(datasets: list, frames: list[int], liver: np.ndarray) -> tuple[list, list[int], list]:
    """The slices from the first to the last one holding a segment, and the others (still referenced).

    highdicom checks and encodes the pixel array it is given, so handing it only the segmented slab (its
    slices evenly spaced as before) saves that work for the slices a SEG would omit anyway; the other slices
    go in as ``further_source_images`` and are referenced all the same. A multi-frame source stays whole.
    """
    if len(datasets) == 1:
        return datasets, frames, []
    occupied = np.flatnonzero(liver.any(axis=(0, 1)))
    keep = [i for i, k in enumerate(frames) if occupied[0] <= k <= occupied[-1]]
    inside = set(keep)
    further = [ds for i, ds in enumerate(datasets) if i not in inside]
    return [datasets[i] for i in keep], [frames[i] for i in keep], further


def _build(datasets: list, pixels: np.ndarray, descriptions: list, settings: SegSettings, source: Path,
           further: list):
    """The highdicom Segmentation of ``pixels`` (``(frames, rows, columns, segments)``), or a DataError."""
    import highdicom as hd

    from medseg import __version__

    try:
        with warnings_module.catch_warnings():
            # highdicom questions one-word patient names ("anonymous"): the source's business, not ours
            warnings_module.filterwarnings("ignore", message="The string .* unlikely to represent",
                                           category=UserWarning)
            return hd.seg.Segmentation(
                source_images=datasets, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions, series_instance_uid=hd.UID(),
                series_number=settings.series_number, sop_instance_uid=hd.UID(), instance_number=1,
                manufacturer="medseg", manufacturer_model_name=settings.manufacturer_model_name,
                software_versions=__version__, device_serial_number="0",
                series_description=settings.series_description, omit_empty_frames=True,
                further_source_images=further or None,
            )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        text = str(exc).strip().splitlines()
        raise DataError(f"highdicom cannot build the SEG ({type(exc).__name__}: {text[0][:200] if text else ''})",
                        path=source) from None


def _segment(number: int, label: str, settings: SegSettings):
    import highdicom as hd

    from medseg import __version__

    parameters = {key: value for key, value in (("checkpoint_sha256", settings.model_sha256),
                                                 ("training_data", settings.training_data)) if value} or None
    algorithm = hd.AlgorithmIdentificationSequence(
        name="medseg", family=codes.ARTIFICIAL_INTELLIGENCE, version=settings.algorithm_version or __version__,
        source=settings.model_name or None, parameters=parameters,
    )
    liver = label == codes.LIVER_SEGMENT_LABEL
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=label,
        segmented_property_category=codes.ANATOMICAL_STRUCTURE if liver else codes.MORPHOLOGICALLY_ALTERED_STRUCTURE,
        segmented_property_type=codes.LIVER if liver else codes.NEOPLASM,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
        anatomic_regions=None if liver else [codes.LIVER], tracking_uid=hd.UID(), tracking_id=label,
    )


def _read_header(path: Path):
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types
        raise DataError(f"unreadable DICOM file ({type(exc).__name__})", path=path) from None


def _repair_uids(datasets: list, source: Path) -> list[str]:
    """Fill blank UIDs (in memory): SOP instance from the file meta, study/series/frame of reference new."""
    from pydicom.uid import generate_uid

    warnings = []
    restored = 0
    for ds in datasets:
        if not str(ds.get("SOPInstanceUID", "") or ""):
            meta_uid = str(getattr(ds, "file_meta", {}).get("MediaStorageSOPInstanceUID", "") or "")
            if not meta_uid:
                raise DataError("slice has no SOPInstanceUID (blank, none in the file meta either): "
                                "a DICOM SEG cannot reference it", path=getattr(ds, "filename", source))
            ds.SOPInstanceUID = meta_uid
            restored += 1
        if not str(ds.get("SOPClassUID", "") or ""):
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        for key in _TYPE2_KEYS:
            if key not in ds:
                setattr(ds, key, "")
    if restored:
        warnings.append(f"{restored} slice(s) had a blank SOPInstanceUID; taken from the file meta")
    for key in _UID_KEYS:
        if not all(str(ds.get(key, "") or "") for ds in datasets):
            uid = generate_uid()
            for ds in datasets:
                if not str(ds.get(key, "") or ""):
                    setattr(ds, key, uid)
            warnings.append(f"source {key} is blank or missing (anonymised?): a new one was made up, so viewers will "
                            f"not link the SEG to the original {_NOUN[key]}")
    return warnings


_NOUN = {"StudyInstanceUID": "study", "SeriesInstanceUID": "series", "FrameOfReferenceUID": "frame of reference"}


def _frames_in_normal_order(datasets: list, labels: Volume, source: Path) -> tuple[list, list[int]]:
    """Source slices sorted along the slice normal, and the label map slice index of each.

    A multi-frame source keeps its frame order (highdicom maps frames one to one); single-frame slices
    are sorted by ``ImagePositionPatient . normal``.
    """
    if len(datasets) == 1 and int(datasets[0].get("NumberOfFrames", 1) or 1) > 1:
        ds = datasets[0]
        positions = [f.PlanePositionSequence[0].ImagePositionPatient for f in ds.PerFrameFunctionalGroupsSequence]
        return datasets, [_slice_index(p, labels, source) for p in positions]
    for ds in datasets:
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            raise DataError("slice has no ImagePositionPatient/ImageOrientationPatient", path=ds.filename)
    iop = np.asarray([float(v) for v in datasets[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    along = [float(np.dot([float(v) for v in ds.ImagePositionPatient], normal)) for ds in datasets]
    ordered = [datasets[i] for i in np.argsort(along, kind="stable")]
    frames = [_slice_index(ds.ImagePositionPatient, labels, source) for ds in ordered]
    if len(set(frames)) != len(frames):
        raise DataError("two source slices map to one label map slice", path=source)
    return ordered, frames


def _slice_index(position, labels: Volume, source: Path) -> int:
    """Label map slice index ``k`` of a slice at ImagePositionPatient ``position`` (its voxel (0, 0, k))."""
    ras = _LPS_RAS[:3, :3] @ np.asarray([float(v) for v in position])
    ijk = np.linalg.solve(labels.affine[:3, :3], ras - labels.affine[:3, 3])
    k = round(float(ijk[2]))
    if np.abs(ijk[:2]).max() > 1e-2 or abs(ijk[2] - k) > 1e-2 or not 0 <= k < labels.shape[2]:
        raise DataError(f"a source slice at {[round(float(v), 2) for v in position]} mm is not a slice of the "
                        f"label map's grid (voxel {np.round(ijk, 2).tolist()}); was the scan read from this "
                        "series in this voxel order?", path=source)
    return k


def _save(seg, path: Path) -> None:
    from medseg.utils.atomic import atomic_path

    with atomic_path(path) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
