"""One way to name a case's inputs, whatever the caller holds: discovery cases, tuples or phantom cases."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import DataError
from medseg.io.volume import Volume

__all__ = ["CaseSpec", "as_case_spec", "input_signature", "load_case_volumes"]


@dataclass(frozen=True)
class CaseSpec:
    """A case's id, image and (optional) label, each a file path or an in-memory :class:`Volume`."""

    case_id: str
    image: Path | Volume
    label: Path | Volume | None


def _source(value: Any) -> Path | Volume | None:
    if value is None or isinstance(value, Volume):
        return value
    return Path(value)


def as_case_spec(case: Any) -> CaseSpec:
    """Normalise a case description to a :class:`CaseSpec`.

    Accepted: a :class:`CaseSpec`; an object with ``case_id`` and ``image`` / ``image_path`` and
    ``label`` / ``label_path`` attributes (``medseg.data.discovery.Case``); a ``(case_id, image, label)``
    tuple of paths or Volumes; a :class:`medseg.data.phantom.PhantomCase` (id from ``info["case_id"]``).
    """
    if isinstance(case, CaseSpec):
        return case
    if isinstance(case, tuple | list):
        if len(case) != 3:
            raise DataError(f"a case tuple must be (case_id, image, label), got {len(case)} items")
        return CaseSpec(str(case[0]), _source(case[1]), _source(case[2]))
    info = getattr(case, "info", None)
    if isinstance(info, dict) and isinstance(getattr(case, "image", None), Volume):
        return CaseSpec(str(info["case_id"]), case.image, getattr(case, "label", None))
    if hasattr(case, "case_id"):
        image = getattr(case, "image_path", None) or getattr(case, "image", None)
        label = getattr(case, "label_path", None) or getattr(case, "label", None)
        if image is None:
            raise DataError(f"case {case.case_id!r} has no image")
        return CaseSpec(str(case.case_id), _source(image), _source(label))
    raise TypeError(f"cannot interpret {type(case).__name__} as a case; expected (case_id, image, label)")


def load_case_volumes(spec: CaseSpec) -> tuple[Volume, Volume | None]:
    """Read the image and label of a case and check that they share one voxel grid.

    A label map on the same world grid stored in another voxel order (e.g. LAS for an L,P,I image) is
    flipped/transposed onto the image's order (:func:`medseg.io.orientation.align_to`), as
    ``medseg check`` accepts it.

    Raises:
        DataError: A file is unreadable, or label and image differ in shape or geometry.
    """
    from medseg.io import read_volume
    from medseg.io.orientation import align_to

    image = spec.image if isinstance(spec.image, Volume) else read_volume(spec.image)
    if spec.label is None:
        return image, None
    label = spec.label if isinstance(spec.label, Volume) else read_volume(spec.label)
    where = spec.label if isinstance(spec.label, Path) else None
    aligned = align_to(label, image, required=False)
    if aligned is not None:
        return image, aligned
    if label.shape != image.shape:
        raise DataError(f"label shape {label.shape} differs from image shape {image.shape} "
                        f"(case {spec.case_id})", path=where)
    if not image.same_geometry(label, atol_mm=1e-2):
        raise DataError(f"label affine differs from the image affine (case {spec.case_id})", path=where)
    return image, label


def input_signature(source: Path | Volume | None) -> str:
    """A short string that changes when the input changes: path, size and mtime of a file, or a hash of a
    Volume's array and affine."""
    if source is None:
        return "none"
    if isinstance(source, Volume):
        digest = hashlib.sha1(np.ascontiguousarray(source.array).tobytes())
        digest.update(np.ascontiguousarray(source.affine).tobytes())
        return f"volume:{digest.hexdigest()}"
    try:
        stat = os.stat(source)
    except FileNotFoundError:
        raise DataError("no such file or folder", path=source) from None
    if Path(source).is_dir():  # DICOM folder: the newest file and the file count stand for the folder
        files = [p for p in Path(source).rglob("*") if p.is_file()]
        newest = max((p.stat().st_mtime_ns for p in files), default=stat.st_mtime_ns)
        return f"dir:{Path(source).resolve()}:{len(files)}:{newest}"
    return f"file:{Path(source).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
