"""NIfTI reading and writing with nibabel, keeping the header's geometry exactly."""

from __future__ import annotations

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
    map written for this scan carries the same header geometry.

    Raises:
        DataError: The file is unreadable, truncated, not NIfTI, or not a 3D image.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file" if not path.exists() else "not a file", path=path)
    try:
        img = nib.load(path)
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            raise DataError(f"not a NIfTI image ({type(img).__name__})", path=path)
        array = np.asanyarray(img.dataobj)
    except DataError:
        raise
    except (EOFError, zlib.error, OSError, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise DataError(f"unreadable or truncated NIfTI file ({_short(exc)})", path=path) from None
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise DataError(f"expected a 3D image, got {array.ndim}D with shape {array.shape}", path=path)
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
        raise DataError(f"invalid geometry in header ({exc})", path=path) from None


def write_nifti(volume: Volume, path: str | os.PathLike, *, label: bool = False) -> Path:
    """Write ``volume`` to ``path`` (``.nii`` or ``.nii.gz``) atomically.

    Args:
        volume: The volume to write. Its affine becomes both qform and sform, unless it came from a
            NIfTI whose qform differed, in which case that qform and its code are restored.
        path: Target file; any existing file is replaced only once the new one is complete.
        label: Write as a ``uint8`` label map (values must be integers in 0..255).

    Returns:
        ``path``.
    """
    path = Path(path)
    if not is_nifti(path):
        raise DataError("output must end in .nii or .nii.gz", path=path)
    array = np.asarray(volume.array)
    if label:
        array = _as_uint8_labels(array, path)
    img = nib.Nifti1Image(array, volume.affine)
    meta = volume.meta
    qform = meta.get("nifti_qform")
    if qform is not None and meta.get("nifti_qform_code", 0) > 0:
        img.set_qform(np.asarray(qform), code=int(meta["nifti_qform_code"]))
    else:
        img.set_qform(volume.affine, code=1)
    img.set_sform(volume.affine, code=max(1, int(meta.get("nifti_sform_code", 1) or 1)))
    if label:
        img.header.set_slope_inter(1.0, 0.0)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return path


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
