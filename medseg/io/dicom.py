"""DICOM CT: list the series in a folder, read a series or a (multi-frame) file, write a series.

Headers and pixels are read with pydicom; compressed single-frame files that pydicom has no decoder for
(no pylibjpeg / GDCM plugin installed) are decoded by SimpleITK (GDCM). The series logic is our own,
because SimpleITK's ``ImageSeriesReader`` only logs a warning for missing slices or non-uniform spacing
and reads on, and reports neither slice counts per series nor where a gap is; enhanced multi-frame CT
is assembled from its per-frame functional groups (position, orientation, pixel spacing, rescale).

Geometry: slices are sorted by their position along the slice normal (``row x column`` of
ImageOrientationPatient); the slice step comes from the positions, never from SliceThickness (used only
for a single slice). When InstanceNumber (or, in a multi-frame file, the frame order) runs against the
normal, the array follows it, so a series written from a left-handed volume reads back unchanged.
DICOM world coordinates are LPS; :class:`~medseg.io.volume.Volume` affines are RAS, so the first two
world rows change sign. ``array[i, j, k]`` is column ``i``, row ``j`` of slice ``k``.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medseg.errors import DataError
from medseg.io.dicom_headers import NOT_IMAGES, check_not_part_of_series, check_pixel_bytes
from medseg.io.dicom_writer import write_dicom_series
from medseg.io.volume import Volume

if TYPE_CHECKING:  # pydicom is imported where used, keeping `import medseg` fast
    from pydicom.dataset import Dataset

__all__ = ["NO_UID", "SeriesInfo", "check_not_part_of_series", "is_dicom_file", "list_dicom_series",
           "read_dicom_file", "read_dicom_series", "write_dicom_series"]

logger = logging.getLogger(__name__)

_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS <-> RAS (its own inverse)

#: How a series without SeriesInstanceUID is listed, and how ``series_uid=`` / ``--series-uid`` chooses it.
NO_UID = "<no uid>"


@dataclass(frozen=True)
class SeriesInfo:
    """One image series found in a folder.

    Attributes:
        uid: SeriesInstanceUID (``""`` when the files have none).
        description: SeriesDescription (may be empty).
        n_slices: Number of slices (frames of multi-frame files included).
        modality: Modality (``"CT"``, ``"MR"``, ...).
        paths: The series' files, sorted by name.
        size: ``(rows, columns)`` of the first file.
    """

    uid: str
    description: str
    n_slices: int
    modality: str
    paths: tuple[Path, ...]
    size: tuple[int, int]

    def __str__(self) -> str:
        desc = f" '{self.description}'" if self.description else ""
        return f"{self.uid or NO_UID} ({self.n_slices} slices, {self.modality or '?'}{desc})"


def is_dicom_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file with the DICOM Part 10 preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def list_dicom_series(folder: str | os.PathLike) -> list[SeriesInfo]:
    """List the image series under ``folder`` (searched recursively; hidden files and non-images skipped).

    Raises:
        DataError: ``folder`` is not a folder, or one of its DICOM files is unreadable.
    """
    groups = _scan(_as_folder(folder))
    return [_series_info(uid, items) for uid, items in groups.items()]


def read_dicom_series(folder: str | os.PathLike, *, series_uid: str | None = None) -> Volume:
    """Read the DICOM series in ``folder`` into a :class:`Volume` of HU values.

    Args:
        folder: A folder holding one series (subfolders are searched), or several with ``series_uid``.
        series_uid: SeriesInstanceUID to read when the folder holds several series; ``""`` or
            ``"<no uid>"`` (:data:`NO_UID`) chooses the series whose files have no SeriesInstanceUID.

    Returns:
        ``(columns, rows, slices)`` Volume, int16 when the rescaled values are integers that fit, float32
        otherwise; ``meta`` holds ``path``, ``format`` ``"dicom"``, ``modality``, ``series_uid``,
        ``series_description``, ``frame_of_reference_uid``.

    Raises:
        DataError: No DICOM images, several series and no ``series_uid``, an unknown ``series_uid``,
            mixed image sizes or orientations, missing slices, non-uniform slice spacing, an unreadable
            file. A non-CT modality is a logged warning.
    """
    folder = _as_folder(folder)
    skipped: Counter = Counter()
    groups = _scan(folder, skipped=skipped)
    if not groups:
        if skipped:
            found = ", ".join(f"{n} {kind} file(s)" for kind, n in skipped.items())
            raise DataError(f"no CT images, only {found}: a segmentation is a label map or reference "
                            "(medseg volumes / evaluate --ref), not a scan", path=folder)
        raise DataError("no DICOM images found (empty folder or no files with a DICM header)", path=folder)
    listing = "; ".join(str(_series_info(uid, items)) for uid, items in groups.items())
    if series_uid == NO_UID:
        series_uid = ""
    if series_uid is None:
        if len(groups) > 1:
            raise DataError(f"{len(groups)} DICOM series in one folder: {listing}; pass series_uid= (medseg "
                            "predict/check/volumes: --series-uid UID) to choose one; for training, keep one series "
                            "per case folder", path=folder)
        series_uid = next(iter(groups))
    elif series_uid not in groups:
        raise DataError(f"no series with uid {series_uid}; found: {listing}", path=folder)
    items = groups[series_uid]
    if len(items) == 1:
        return read_dicom_file(items[0][0])
    if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for _, ds in items):
        raise DataError(f"series {series_uid} mixes several multi-frame files; read each with read_dicom_file",
                        path=folder)
    _warn_modality(items[0][1], folder)
    sizes = Counter((int(ds.Rows), int(ds.Columns)) for _, ds in items)
    if len(sizes) > 1:
        found = ", ".join(f"{n} slices of {r}x{c}" for (r, c), n in sizes.most_common())
        raise DataError(f"mixed image sizes in series {series_uid}: {found}", path=folder)
    names = [p.name for p, _ in items]
    for path, ds in items:
        for key in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if key not in ds:
                raise DataError(f"slice has no {key}, cannot place it in the volume", path=path)
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in items])
    iops = np.array([[float(v) for v in ds.ImageOrientationPatient] for _, ds in items])
    spacings = np.array([[float(v) for v in ds.PixelSpacing] for _, ds in items])
    numbers = [ds.get("InstanceNumber") for _, ds in items]
    hint = np.array([float(n) for n in numbers]) if all(n is not None for n in numbers) else None
    order, affine = _stack_geometry(positions, iops, spacings, hint, 1.0, names, folder)
    array = _as_hu_dtype(_series_values([items[i] for i in order]))
    ds0 = items[order[0]][1]
    meta = {"path": str(folder), "format": "dicom", "modality": str(ds0.get("Modality", "")),
            "series_uid": series_uid, "series_description": str(ds0.get("SeriesDescription", "")),
            "frame_of_reference_uid": str(ds0.get("FrameOfReferenceUID", ""))}
    return Volume(array=array, affine=affine, meta=meta)


def read_dicom_file(path: str | os.PathLike) -> Volume:
    """Read one DICOM file: a single slice (a 1-slice Volume) or an enhanced multi-frame image.

    Enhanced multi-frame geometry and rescale come from the per-frame functional groups, falling back to
    the shared ones. A single slice's thickness is SpacingBetweenSlices, else SliceThickness, else 1 mm.

    Raises:
        DataError: Unreadable file, no image, colour image, or inconsistent frames (see
            :func:`read_dicom_series`).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path=path)
    header = _read(path, pixels=False)
    if "Rows" not in header:
        raise DataError("DICOM file holds no image", path=path)
    check_pixel_bytes(path, header)
    ds = _read(path, pixels=True)
    if "PixelData" not in ds:
        raise DataError("DICOM file holds no image", path=path)
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise DataError(f"colour DICOM image ({ds.get('PhotometricInterpretation')}), expected grayscale CT",
                        path=path)
    _warn_modality(ds, path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    meta = {"path": str(path), "format": "dicom", "modality": str(ds.get("Modality", "")),
            "series_uid": str(ds.get("SeriesInstanceUID", "")),
            "series_description": str(ds.get("SeriesDescription", "")),
            "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", ""))}
    if frames == 1:
        _require(ds, ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"), path)
        hu = _slice_hu(path, ds)
        _, affine = _stack_geometry(np.array([[float(v) for v in ds.ImagePositionPatient]]),
                                    np.array([[float(v) for v in ds.ImageOrientationPatient]]),
                                    np.array([[float(v) for v in ds.PixelSpacing]]), None, _thickness(ds, path),
                                    [path.name], path)
        return Volume(array=_as_hu_dtype(hu.T[:, :, None]), affine=affine, meta=meta)
    return _read_multiframe(ds, frames, meta, path)


def _read_multiframe(ds, frames: int, meta: dict, path: Path) -> Volume:
    """An enhanced multi-frame image: per-frame geometry and rescale (else the shared groups)."""
    if "PerFrameFunctionalGroupsSequence" not in ds:
        raise DataError(f"multi-frame DICOM ({frames} frames) without per-frame functional groups "
                        "(only enhanced multi-frame CT is supported)", path=path)
    from pydicom.dataset import Dataset

    shared = ds.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
    per_frame = ds.PerFrameFunctionalGroupsSequence
    if len(per_frame) != frames:
        raise DataError(f"{len(per_frame)} per-frame groups for {frames} frames", path=path)
    try:
        pixels = ds.pixel_array.reshape(frames, int(ds.Rows), int(ds.Columns))
    except Exception as exc:  # any decoder failure: missing plugin, truncated pixel data
        raise DataError(f"cannot decode pixel data ({_short(exc)})", path=path) from None

    def group(item: Dataset, name: str, key: str):
        for source in (item, shared):
            if name in source and key in source[name].value[0]:
                return source[name].value[0][key].value
        if key in ds:
            return ds[key].value
        raise DataError(f"frame has no {key} in {name} (per-frame or shared)", path=path)

    positions = np.array([[float(v) for v in group(f, "PlanePositionSequence", "ImagePositionPatient")]
                          for f in per_frame])
    iops = np.array([[float(v) for v in group(f, "PlaneOrientationSequence", "ImageOrientationPatient")]
                     for f in per_frame])
    spacings = np.array([[float(v) for v in group(f, "PixelMeasuresSequence", "PixelSpacing")] for f in per_frame])
    try:
        slopes = np.array([float(group(f, "PixelValueTransformationSequence", "RescaleSlope")) for f in per_frame])
        intercepts = np.array([float(group(f, "PixelValueTransformationSequence", "RescaleIntercept"))
                               for f in per_frame])
    except DataError:  # no rescale anywhere: stored values are the values
        slopes, intercepts = np.ones(frames), np.zeros(frames)
    names = [f"frame {i + 1}" for i in range(frames)]
    order, affine = _stack_geometry(positions, iops, spacings, np.arange(frames, dtype=float), 1.0, names, path)
    # pydicom's apply_rescale reads only top-level Rescale attributes, not per-frame functional groups
    hu = pixels[order].astype(np.float64) * slopes[order, None, None] + intercepts[order, None, None]
    return Volume(array=_as_hu_dtype(np.transpose(hu, (2, 1, 0))), affine=affine, meta=meta)


# --------------------------------------------------------------------------------------------------
# helpers


def _as_folder(folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    if not folder.exists():
        raise DataError("no such folder", path=folder)
    if not folder.is_dir():
        raise DataError("not a folder", path=folder)
    return folder


def _read(path: Path, *, pixels: bool) -> Dataset:
    """pydicom read; any parse failure becomes a one-line DataError naming the file."""
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except Exception as exc:  # pydicom raises many types (InvalidDicomError, EOFError, struct.error, ...)
        raise DataError(f"unreadable DICOM file ({_short(exc)})", path=path) from None


def _scan(folder: Path, *, skipped: Counter | None = None) -> dict[str, list[tuple[Path, Dataset]]]:
    """Headers of the image files under ``folder``, grouped by SeriesInstanceUID (files sorted by path).

    DICOM SEG and RTSTRUCT files are skipped (counted in ``skipped``); every image's declared pixel data
    must fit in its file (checked before anything is decoded).
    """
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).parts
        if any(part.startswith(".") for part in rel) or not path.is_file() or not is_dicom_file(path):
            continue
        ds = _read(path, pixels=False)
        kind = NOT_IMAGES.get(str(ds.get("SOPClassUID", "")))
        if kind:
            logger.debug("%s: %s, not an image; skipped", path, kind)
            if skipped is not None:
                skipped[kind] += 1
            continue
        if "Rows" not in ds:
            sop = ds.file_meta.get("MediaStorageSOPClassUID") if hasattr(ds, "file_meta") else None
            if len(ds) == 0 or sop is None or "Image" in getattr(sop, "name", ""):
                raise DataError("truncated or incomplete DICOM file (no image header)", path=path)
            logger.debug("%s: not an image (%s), skipped", path, getattr(sop, "name", sop))
            continue
        check_pixel_bytes(path, ds)
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((path, ds))
    return groups


def _series_info(uid: str, items: list[tuple[Path, Dataset]]) -> SeriesInfo:
    ds = items[0][1]
    return SeriesInfo(
        uid=uid, description=str(ds.get("SeriesDescription", "")),
        n_slices=sum(int(d.get("NumberOfFrames", 1) or 1) for _, d in items), modality=str(ds.get("Modality", "")),
        paths=tuple(p for p, _ in items), size=(int(ds.Rows), int(ds.Columns)),
    )


def _warn_modality(ds: Dataset, where: Path) -> None:
    modality = str(ds.get("Modality", ""))
    if modality != "CT":
        logger.warning("%s: modality is %r, not CT; values may not be Hounsfield units", where, modality or "unset")


def _require(ds: Dataset, keys: tuple[str, ...], path: Path) -> None:
    for key in keys:
        if key not in ds:
            raise DataError(f"no {key}, cannot place the image in space", path=path)


def _thickness(ds: Dataset, where: Path) -> float:
    """Slice step of a single slice: SpacingBetweenSlices, else SliceThickness, else 1 mm (logged).

    A value that is present but zero or negative is an error, never silently 1 mm.
    """
    found = []
    for key in ("SpacingBetweenSlices", "SliceThickness"):
        value = ds.get(key)
        if value not in (None, ""):
            if float(value) > 0:
                return float(value)
            found.append(f"{key} {float(value):g}")
    if found:
        raise DataError(f"voxel size: {', '.join(found)} mm; slice thickness must be positive", path=where)
    logger.warning("%s: a single slice without SliceThickness; its thickness is taken as 1 mm", where)
    return 1.0


def _stack_geometry(positions, iops, spacings, hint, thickness, names, where) -> tuple[np.ndarray, np.ndarray]:
    """Sort slices along the normal, check they are evenly spaced, and build the RAS affine.

    Args:
        positions: ``(N, 3)`` ImagePositionPatient (LPS mm). iops: ``(N, 6)``. spacings: ``(N, 2)``.
        hint: ``(N,)`` InstanceNumber / frame index or ``None``; the output follows it if it runs against
            the normal. thickness: slice step for ``N == 1``. names: slice names for messages.

    Returns:
        ``order`` (indices of the slices along array axis 2) and the ``(4, 4)`` RAS affine.
    """
    n = len(positions)
    if not np.allclose(iops, iops[0], atol=1e-4):
        raise DataError(f"slices have different orientations (ImageOrientationPatient), "
                        f"e.g. {names[0]} and {names[int(np.argmax(np.abs(iops - iops[0]).max(axis=1)))]}", path=where)
    if not np.all(np.isfinite(spacings)) or np.any(spacings <= 0):
        bad = spacings[np.argmax(np.any(~(spacings > 0), axis=1))].tolist()
        raise DataError(f"PixelSpacing {bad} mm: voxel sizes must be positive numbers", path=where)
    if not np.allclose(spacings, spacings[0], atol=1e-4):
        raise DataError(f"slices have different pixel spacings: {sorted({tuple(s) for s in spacings.tolist()})}",
                        path=where)
    row, col = iops[0, :3], iops[0, 3:]
    normal = np.cross(row, col)
    if np.linalg.norm(normal) < 1e-3:
        raise DataError(f"invalid ImageOrientationPatient {iops[0].tolist()}", path=where)
    normal = normal / np.linalg.norm(normal)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    if hint is not None and n > 1 and np.all(np.diff(hint[order]) < 0):
        order = order[::-1]
    if n > 1:
        _check_gaps(along[order], [names[i] for i in order], where)
        step = (positions[order[-1]] - positions[order[0]]) / (n - 1)
        line = positions[order[0]] + np.arange(n)[:, None] * step
        off = np.linalg.norm(positions[order] - line, axis=1)
        if off.max() > max(0.05, 0.05 * np.linalg.norm(step)):
            raise DataError(f"slice positions do not lie on one line (slice {names[order[int(np.argmax(off))]]} is "
                            f"{off.max():.2f} mm off)", path=where)
    else:
        step = normal * thickness
    lps = np.eye(4)
    lps[:3, 0] = row * spacings[0, 1]  # array axis 0 runs along a row (column index), PixelSpacing[1]
    lps[:3, 1] = col * spacings[0, 0]
    lps[:3, 2] = step
    lps[:3, 3] = positions[order[0]]
    return order, _LPS_RAS @ lps


def _check_gaps(along: np.ndarray, names: list[str], where) -> None:
    """Raise for duplicate positions, missing slices or non-uniform spacing (``along`` sorted, mm)."""
    gaps = np.abs(np.diff(along))
    if gaps.min() < 1e-3:
        i = int(np.argmin(gaps))
        raise DataError(f"{int(np.sum(gaps < 1e-3)) + 1} slices share a position ({names[i]} and {names[i + 1]} at "
                        f"{along[i]:.2f} mm); several phases or acquisitions in one series?", path=where)
    expected = float(np.median(gaps))
    bad = np.flatnonzero(np.abs(gaps - expected) > max(0.02, 0.01 * expected))
    if not len(bad):
        return
    i = int(bad[0])
    ratio = gaps[i] / expected
    where_txt = f"between {names[i]} and {names[i + 1]} ({along[i]:.2f} -> {along[i + 1]:.2f} mm along the normal)"
    more = f"; {len(bad)} irregular gaps in all" if len(bad) > 1 else ""
    if round(ratio) >= 2 and abs(ratio - round(ratio)) < 0.1:
        raise DataError(f"missing slice(s): expected a gap of {expected:.3g} mm, found {gaps[i]:.3g} mm "
                        f"({round(ratio) - 1} slice(s) missing) {where_txt}{more}", path=where)
    raise DataError(f"non-uniform slice spacing: expected {expected:.3g} mm, found {gaps[i]:.3g} mm {where_txt}{more}",
                    path=where)


def _series_values(items: list[tuple[Path, Dataset]]) -> np.ndarray:
    """``(columns, rows, slices)`` rescaled values of single-frame files, in the given order.

    SimpleITK (GDCM) reads the files about 5x faster than pydicom; it is used when every slice shares one
    rescale (it types its output from the first file) and GDCM returns the stored values as pydicom does
    (:func:`_gdcm_reads_values`), and pydicom slice by slice otherwise or if it fails.
    """
    rescales = {(str(ds.get("RescaleSlope", "1")), str(ds.get("RescaleIntercept", "0"))) for _, ds in items}
    if len(rescales) == 1 and all(_gdcm_reads_values(ds) for _, ds in items):
        try:
            import SimpleITK as sitk

            image = sitk.ReadImage([str(p) for p, _ in items])
            values = sitk.GetArrayFromImage(image)
            if values.shape == (len(items), int(items[0][1].Rows), int(items[0][1].Columns)):
                return values.transpose(2, 1, 0)
        except RuntimeError as exc:  # fall back to pydicom, which names the failing file
            logger.debug("SimpleITK could not read the series (%s); using pydicom", _short(exc))
    return np.stack([_slice_hu(path).T for path, _ in items], axis=-1)


def _gdcm_reads_values(ds: Dataset) -> bool:
    """Whether SimpleITK (GDCM) returns the same modality values as pydicom for this file.

    Not for a modality LUT sequence (GDCM applies only Rescale Slope/Intercept), nor for MONOCHROME1: GDCM
    inverts MONOCHROME1 pixels to MONOCHROME2 before the rescale (a -1024..427 HU series reads as
    63060..64511), while the photometric interpretation is a display rule that does not change HU (the
    modality LUT, PS3.3 C.11.1, applies to the stored values).
    """
    return "ModalityLUTSequence" not in ds and str(ds.get("PhotometricInterpretation", "MONOCHROME2")) != "MONOCHROME1"


def _slice_hu(path: Path, ds: Dataset | None = None) -> np.ndarray:
    """``(rows, columns)`` values of a single-frame file after the modality LUT / rescale."""
    from pydicom.pixels import apply_modality_lut

    ds = ds if ds is not None and "PixelData" in ds else _read(path, pixels=True)
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise DataError("colour DICOM image, expected grayscale CT", path=path)
    try:
        return np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)
    except Exception as exc:  # no pydicom decoder for this transfer syntax: let GDCM (SimpleITK) try
        first = _short(exc)
    if not _gdcm_reads_values(ds):
        raise DataError(f"cannot decode pixel data ({first}; SimpleITK would read this "
                        f"{ds.get('PhotometricInterpretation', '')} image with other values)", path=path)
    try:
        import SimpleITK as sitk

        image = sitk.ReadImage(str(path))  # GDCM applies RescaleSlope/Intercept itself
        return sitk.GetArrayFromImage(image).reshape(int(ds.Rows), int(ds.Columns)).astype(np.float64)
    except Exception:
        raise DataError(f"cannot decode pixel data ({first})", path=path) from None


def _as_hu_dtype(values: np.ndarray) -> np.ndarray:
    """int16 when every value is an integer within int16, else float32 (memory order kept, as nibabel's
    Fortran-ordered arrays: a transposed SimpleITK array is not copied)."""
    if values.dtype == np.int16:
        return values
    integral = np.issubdtype(values.dtype, np.integer) or bool(np.all(values == np.round(values)))
    if values.size and integral and values.min() >= -32768 and values.max() <= 32767:
        return values.astype(np.int16, order="K")
    return values.astype(np.float32, order="K")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
