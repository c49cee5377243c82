"""Checks on DICOM headers made before any pixel is decoded: declared pixel data that the file cannot hold,
and one slice file of a series whose other files are beside it (read the folder instead).

Both are our own: pydicom decodes (and allocates) what the header declares and fails late, SimpleITK reads
a single slice without a word about the rest of its series.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from medseg.errors import DataError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["NOT_IMAGES", "check_not_part_of_series", "check_pixel_bytes"]

#: SOP classes that are not images, by name: skipped in series folders, refused where a CT is expected.
NOT_IMAGES = {"1.2.840.10008.5.1.4.1.1.66.4": "DICOM SEG", "1.2.840.10008.5.1.4.1.1.481.3": "RTSTRUCT"}


def check_not_part_of_series(path: str | os.PathLike) -> None:
    """Refuse a single-slice file whose folder holds other slices of its series (pass the folder instead).

    Raises:
        DataError: Naming the file, the series and how many of its files are in the folder.
    """
    import pydicom

    path = Path(path)
    ds = _header(path)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1 or "SeriesInstanceUID" not in ds:
        return
    uid = str(ds.SeriesInstanceUID)
    others = 0
    for other in path.parent.iterdir():
        if other == path or other.name.startswith(".") or not other.is_file() or not _has_preamble(other):
            continue
        try:
            head = pydicom.dcmread(other, stop_before_pixels=True, specific_tags=["SeriesInstanceUID", "Rows"])
        except Exception:  # an unreadable neighbour is not this file's problem
            continue
        others += int(str(head.get("SeriesInstanceUID", "")) == uid and "Rows" in head)
    if others:
        raise DataError(f"one slice of a {others + 1}-file DICOM series ({uid}); pass the folder {path.parent} to "
                        "read the whole series", path=path)


def check_pixel_bytes(path: Path, ds: Dataset) -> None:
    """Refuse, before decoding, an uncompressed image whose file is shorter than its declared pixel data.

    A deflated file (transfer syntax 1.2.840.10008.1.2.1.99: the whole data set deflated, the pixels stored
    uncompressed inside it) is measured after inflation.
    """
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and getattr(syntax, "is_compressed", False):
        return
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits, samples = int(ds.get("BitsAllocated", 16)), int(ds.get("SamplesPerPixel", 1))
    except (TypeError, ValueError) as exc:
        raise DataError(f"invalid image header ({_short(exc)})", path=path) from None
    if min(rows, columns, frames, bits, samples) <= 0:
        raise DataError(f"invalid image size (Rows {rows}, Columns {columns}, {frames} frame(s))", path=path)
    needed = (rows * columns * frames * samples * bits + 7) // 8
    deflated = syntax is not None and getattr(syntax, "is_deflated", False)
    size = _inflated_size(path, ds, at_least=needed) if deflated else path.stat().st_size
    if needed > size:
        has = "the file inflates to" if deflated else "the file has"
        raise DataError(f"pixel data shorter than declared: {rows} rows x {columns} columns x {frames} frame(s) at "
                        f"{bits} bits need {needed} bytes, {has} {size}: truncated or corrupt", path=path)


def _inflated_size(path: Path, ds: Dataset, *, at_least: int) -> int:
    """Bytes of the deflated data set of a Deflated Explicit VR Little Endian file (DICOM PS3.5 A.5), counted
    while inflating in 1 MiB pieces, never held whole; counting stops once ``at_least`` bytes are reached.

    The data set follows the file meta group, which is not deflated: 128-byte preamble, ``DICM``, then the
    12-byte group length element (0002,0000) and the ``FileMetaInformationGroupLength`` bytes it counts.
    A stream that ends early or is corrupt counts what it inflated until then.
    """
    length = ds.file_meta.get("FileMetaInformationGroupLength")
    if length is None:  # not a conforming file meta: no place to start from; pydicom's own read decides
        return at_least
    inflater, total, chunk = zlib.decompressobj(-zlib.MAX_WBITS), 0, 1 << 20
    with open(path, "rb") as f:
        f.seek(132 + 12 + int(length))
        try:
            while total < at_least and not inflater.eof:
                data = inflater.unconsumed_tail or f.read(chunk)
                if not data:
                    break
                total += len(inflater.decompress(data, chunk))
        except zlib.error:
            pass  # corrupt from here on: what inflated so far is all the file holds
    return total


def _header(path: Path) -> Dataset:
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types for a broken file
        text = str(exc).strip().splitlines()
        raise DataError(f"unreadable DICOM file ({type(exc).__name__}: {text[0][:200] if text else ''})",
                        path=path) from None


def _has_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
