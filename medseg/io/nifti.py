"""NIfTI reading and writing with nibabel, keeping the header's geometry exactly."""

from __future__ import annotations

import io
import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.errors import DataError
from medseg.io.volume import Volume
from medseg.utils.atomic import atomic_path

__all__ = ["NIFTI_SUFFIXES", "is_nifti", "read_nifti", "write_nifti"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | os.PathLike) -> bool:
    """Whether ``path`` has a NIfTI file name (``.nii`` or ``.nii.gz``)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def read_nifti(path: str | os.PathLike) -> Volume:
    """Read a 3D NIfTI file into a :class:`Volume` (voxel order and dtype as stored, scaling applied).

    A 4D file with a single volume is squeezed to 3D. qform/sform are remembered in ``meta`` so a label
    map written for this scan carries the same header geometry. The header is checked before any voxel
    is read: dimensions (3D, not RGB or a time series), voxel sizes (positive) and the data size it
    declares against what the file can hold, so a broken 82-byte header that declares 64 GiB is refused
    without allocating. A ``.nii.gz`` is read to its end, so a gzip CRC error is never a half-garbage
    volume.

    Raises:
        DataError: The file is unreadable, truncated, corrupt, not NIfTI, or not a 3D grayscale image.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file" if not path.exists() else "not a file", path=path)
    try:
        _check_layout(path)  # before nibabel holds the header extensions in memory
        with nib.imageglobals.LoggingOutputSuppressor():  # nibabel "fixes" bad pixdim with a log line
            img = nib.load(path)  # header only: the voxels are read below, from our own stream
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            raise DataError(f"not a NIfTI image ({type(img).__name__})", path=path)
        _check_header(img.header, path)
        array = _read_voxels(img, path)
    except DataError:
        raise
    except (EOFError, zlib.error, OSError, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise DataError(f"unreadable or truncated NIfTI file ({_short(exc)})", path=path) from None
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    header = img.header
    qform, qcode = header.get_qform(coded=True)
    _, scode = header.get_sform(coded=True)
    meta = {
        "path": str(path),
        "format": "nifti",
        "nifti_qform": None if qform is None else np.asarray(qform),
        "nifti_qform_code": int(qcode),
        "nifti_sform_code": int(scode),
    }
    try:
        return Volume(array=array, affine=img.affine, meta=meta)
    except ValueError as exc:
        raise DataError(f"invalid geometry in header ({' '.join(str(exc).split())})", path=path) from None


#: Largest ratio of decompressed to compressed size that deflate can reach (about 1032:1).
_DEFLATE_MAX_RATIO = 1032

#: Most bytes of NIfTI header extensions (DICOM tags, AFNI/XML metadata) a file may carry: nibabel holds them
#: in memory (twice, while it reads them), and 512 MiB of them gzip to 510 kB.
MAX_EXTENSION_BYTES = 64 << 20


def _check_header(header, path: Path) -> None:
    """Refuse, from the header alone, what is not a 3D grayscale volume with positive voxel sizes that fits."""
    shape = tuple(int(n) for n in header.get_data_shape())
    dtype = header.get_data_dtype()
    if dtype.fields is not None or int(header.get("intent_code", 0)) in (1007, 2003, 2004):  # vector, RGB, RGBA
        raise DataError(f"colour/vector NIfTI ({dtype}, shape {shape}): expected a 3D grayscale scan or label map",
                        path=path)
    if (len(shape) == 4 and shape[3] > 1) or len(shape) > 4:
        what = "a time series or multi-channel image" if len(shape) == 4 else "an image with vector voxels"
        raise DataError(f"expected a 3D image, got {len(shape)}D with shape {shape} ({what})", path=path)
    if len(shape) < 3:
        raise DataError(f"expected a 3D image, got {len(shape)}D with shape {shape}", path=path)
    pixdim = _stored_pixdim(type(header), path)
    if not all(np.isfinite(pixdim)) or min(pixdim) <= 0:
        shown = " x ".join(f"{v:g}" for v in pixdim)
        raise DataError(f"voxel size (pixdim) {shown} mm: every voxel size must be a positive number", path=path)
    needed = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    size = path.stat().st_size
    compressed = str(path).lower().endswith(".gz")
    holds = size * _DEFLATE_MAX_RATIO if compressed else size - int(header.get_data_offset())
    if needed > holds:
        shown = "x".join(map(str, shape))
        limit = f"at most {_human(holds)} once decompressed" if compressed else f"{_human(max(holds, 0))} of voxels"
        raise DataError(f"header declares {shown} {dtype} voxels ({_human(needed)}) but the {size}-byte file holds "
                        f"{limit}: truncated or corrupt header", path=path)


def _stored_pixdim(header_class, path: Path) -> list[float]:
    """Voxel sizes as stored: nibabel's loaded header already replaced 0 by 1 and negatives by their abs."""
    with _open(path) as stream:
        raw = header_class.from_fileobj(io.BytesIO(stream.read(header_class.template_dtype.itemsize)), check=False)
    return [float(v) for v in raw["pixdim"][1:4]]


def _open(path: Path):
    import gzip

    return gzip.open(path, "rb") if str(path).lower().endswith(".gz") else open(path, "rb")


def _check_layout(path: Path) -> None:
    """Refuse, from the first bytes of the (decompressed) stream, a file whose header extensions and voxels
    do not fit in it, before nibabel reads the extensions into memory.

    The voxels start at ``vox_offset``, after the header and its extensions: ``vox_offset`` plus the voxel
    bytes must fit (for ``.nii.gz``: within the deflate limit of the compressed size), and the extensions
    hold at most :data:`MAX_EXTENSION_BYTES` (the deflate limit alone lets 512 MiB through a 510 kB file).
    Each extension (``esize``, ``ecode``, content; NIfTI-1 format) must end before ``vox_offset``: nibabel
    reads ``esize`` bytes whatever ``vox_offset`` says, and everything to the end of the file for a negative
    one. The walk skips the contents in 1 MiB pieces. Files that are not NIfTI-1/2 are left to nibabel.
    """
    with _open(path) as stream:
        first = stream.read(4)
        kinds = {n: k for k in (nib.Nifti1Header, nib.Nifti2Header) for n in (k.sizeof_hdr, k.sizeof_hdr << 24)}
        kind = kinds.get(int.from_bytes(first.ljust(4, b"\0"), "little"))
        if kind is None:
            return
        raw = first + stream.read(kind.template_dtype.itemsize - 4)
        flag = stream.read(4)
        header = kind.from_fileobj(io.BytesIO(raw), check=False)  # the header alone: no extension is read
        offset, start = int(header["vox_offset"]), len(raw) + 4
        shape, dtype = tuple(int(n) for n in header.get_data_shape()), header.get_data_dtype()
        voxels = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        shown = f"{'x'.join(map(str, shape))} {dtype} voxels ({_human(voxels)}) after {offset} bytes of header"
        _check_fits(path, offset + voxels, shown + (" and extensions" if offset > start else ""))
        if len(flag) == 4 and flag[:1] != b"\0":
            _walk_extensions(stream, path, start, offset, "<" if header.endianness == "<" else ">")


def _check_fits(path: Path, needed: int, what: str) -> None:
    """Refuse ``needed`` bytes (``what``: the header's declaration) that the file cannot hold."""
    size = path.stat().st_size
    holds = size * _DEFLATE_MAX_RATIO if str(path).lower().endswith(".gz") else size
    if needed > holds:
        limit = f"at most {_human(holds)} once decompressed" if holds > size else _human(holds)
        raise DataError(f"header declares {what} but the {size}-byte file holds {limit}: truncated or corrupt "
                        "header", path=path)


def _walk_extensions(stream, path: Path, position: int, offset: int, endian: str) -> None:
    """Check that every header extension from ``position`` on ends before the voxels at ``offset``, and that
    together they stay within :data:`MAX_EXTENSION_BYTES`, reading only their 8-byte heads."""
    start = position
    while offset - position >= 16:  # nibabel's loop: an extension head fits before the voxels
        esize, ecode = np.frombuffer(stream.read(8).ljust(8, b"\0"), dtype=f"{endian}i4").tolist()
        if esize < 8 or position + esize > offset:
            raise DataError(f"header extension (code {ecode}) at byte {position} declares {esize} bytes, but "
                            f"{offset - position} bytes lie between it and the voxels (vox_offset {offset}): "
                            "corrupt header", path=path)
        if position + esize - start > MAX_EXTENSION_BYTES:
            raise DataError(f"header extensions of {_human(position + esize - start)} or more (code {ecode} at byte "
                            f"{position}): more than the {_human(MAX_EXTENSION_BYTES)} medseg reads; remove them "
                            "(nibabel: img.header.extensions.clear())", path=path)
        left = esize - 8
        while left > 0:
            got = len(stream.read(min(left, 1 << 20)))
            if not got:
                raise DataError(f"file ends inside a header extension at byte {position}: truncated", path=path)
            left -= got
        position += esize


def _read_voxels(img, path: Path) -> np.ndarray:
    """The voxels (scaled). A ``.nii.gz`` is read from our own stream, which is then read to its end: the
    gzip trailer's CRC32 and length are only checked there (nibabel stops after the voxels). A ``.nii`` is
    read as nibabel does (memory-mapped where possible)."""
    if not str(path).lower().endswith(".gz"):
        return np.asanyarray(img.dataobj)
    import gzip

    from nibabel.fileholders import FileHolder

    with gzip.open(path, "rb") as stream:
        holder = FileHolder(fileobj=stream)
        loaded = type(img).from_file_map({"image": holder, "header": holder})
        array = np.asanyarray(loaded.dataobj)
        while stream.read(1 << 20):
            pass
    return array


def _human(n_bytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n_bytes) < 1024 or unit == "TiB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} TiB"


def write_nifti(volume: Volume, path: str | os.PathLike, *, label: bool = False, scale: float | None = None) -> Path:
    """Write ``volume`` to ``path`` (``.nii`` or ``.nii.gz``) atomically.

    Args:
        volume: The volume to write. Its affine becomes both qform and sform, unless it came from a
            NIfTI whose qform differed, in which case that qform and its code are restored.
        path: Target file; any existing file is replaced only once the new one is complete.
        label: Write as a ``uint8`` label map (values must be integers in 0..255).
        scale: Store the array as it is with ``scl_slope = scale`` (readers see ``stored * scale``), e.g. a
            uint8 probability map with ``1 / 255``.

    Returns:
        ``path``.
    """
    path = Path(path)
    if not is_nifti(path):
        raise DataError("output must end in .nii or .nii.gz", path=path)
    array = np.asarray(volume.array)
    if label:
        array = _as_uint8_labels(array, path)
    img = nib.Nifti1Image(_fortran_order(array), volume.affine)
    meta = volume.meta
    qform = meta.get("nifti_qform")
    if qform is not None and meta.get("nifti_qform_code", 0) > 0:
        img.set_qform(np.asarray(qform), code=int(meta["nifti_qform_code"]))
    else:
        img.set_qform(volume.affine, code=1)
    img.set_sform(volume.affine, code=max(1, int(meta.get("nifti_sform_code", 1) or 1)))
    if label:
        img.header.set_slope_inter(1.0, 0.0)
    elif scale is not None:
        img.header.set_slope_inter(float(scale), 0.0)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return path


def _fortran_order(array: np.ndarray, *, tile: tuple[int, int] = (128, 8)) -> np.ndarray:
    """``array`` in Fortran order (as NIfTI stores voxels), copied a ``tile`` of the first two axes at a time.

    nibabel writes a C-ordered array one last-axis slice at a time through ``tobytes`` on a strided view,
    which touches one byte per cache line: 1.9 s for a 512 x 512 x 298 uint8 label map (``np.asfortranarray``:
    1.6 s). Copying tiles of 128 x 8 x Z keeps source and target in cache: 0.2 s. Same bytes in the file.
    """
    if array.ndim != 3 or array.flags.f_contiguous:
        return array
    out = np.empty(array.shape[::-1], dtype=array.dtype).T  # Fortran-ordered (X, Y, Z)
    for x in range(0, array.shape[0], tile[0]):
        for y in range(0, array.shape[1], tile[1]):
            out[x : x + tile[0], y : y + tile[1]] = array[x : x + tile[0], y : y + tile[1]]
    return out


def _as_uint8_labels(array: np.ndarray, path: Path) -> np.ndarray:
    """Check that ``array`` holds integer labels in 0..255 and return it as uint8."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
        raise DataError("label map has non-integer values", path=path)
    if array.size and (array.min() < 0 or array.max() > 255):
        raise DataError(f"label values must be in 0..255, got {array.min()}..{array.max()}", path=path)
    return array.astype(np.uint8)


def _short(exc: BaseException) -> str:
    """One-line description of an exception."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
