"""Write a partially annotated copy of a data set: the work behind ``medseg sparsify`` (issue #30).

Every labelled training case of a data set (any layout :mod:`medseg.data.discovery` reads) is written to a
Decathlon/nnU-Net layout: ``imagesTr/<case>_0000.nii.gz`` (the image), ``labelsTr/<case>.nii.gz`` (the
partial label map: :mod:`medseg.data.sparsify` schemes, or lesion boxes, :mod:`medseg.data.boxes`), and a
``dataset.json`` that declares the ignore label (``"labels": {..., "ignore": 3}``), lists the cases and
records how the labels were made and the annotated fraction of each case and of the whole set, so
``medseg check`` and ``medseg train`` (with ``data.ignore_label``) read it as it is.
"""

from __future__ import annotations

import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.errors import ConfigError, DataError

__all__ = ["SparsifySettings", "write_sparse_dataset"]

#: The schemes of :mod:`medseg.data.sparsify` and ``boxes`` (:mod:`medseg.data.boxes`).
ALL_SCHEMES = ("slices", "scribbles", "patches", "boxes")


@dataclass(frozen=True)
class SparsifySettings:
    """How to sparsify: ``scheme``, ``fraction`` (of slices, or of voxels for patches), ``seed``, the
    ``ignore_label`` written, and for ``boxes`` a CSV of boxes (``None``: the dense lesions' tight boxes)
    and the tumor ``core`` scale."""

    scheme: str
    fraction: float = 0.2
    seed: int = 0
    ignore_label: int = 3
    boxes_csv: str | None = None
    core: float = 0.5

    def __post_init__(self) -> None:
        if self.scheme not in ALL_SCHEMES:
            raise ConfigError(f"--scheme {self.scheme!r} is not one of {', '.join(ALL_SCHEMES)}")
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError(f"--fraction {self.fraction} must lie in (0, 1]")
        if not 3 <= self.ignore_label <= 255:
            raise ConfigError(f"--ignore-label {self.ignore_label} must lie in 3..255 (0, 1, 2 are LiTS classes)")
        if not 0.0 <= self.core <= 1.0:
            raise ConfigError(f"--core {self.core} must lie in [0, 1]")
        if self.boxes_csv is not None and self.scheme != "boxes":
            raise ConfigError("--boxes is for --scheme boxes")


def _check_out(data: Path, out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError("OUT must be a new or empty folder", path=out)
    if out.resolve() == data.resolve() or data.resolve() in out.resolve().parents:
        raise ConfigError("OUT must lie outside the data set", path=out)


def _sparse_label(label, settings: SparsifySettings, boxes, case_id: str) -> np.ndarray:
    from medseg.data.boxes import box_labels, boxes_from_labels
    from medseg.data.sparsify import axial_axis, sparsify_labels

    dense = np.asarray(label.array)
    if settings.scheme == "boxes":
        found = boxes.get(case_id, []) if boxes is not None else boxes_from_labels(dense, label.affine)
        return box_labels(dense, found, label.affine, ignore_label=settings.ignore_label, core=settings.core)
    rng = np.random.default_rng([settings.seed, zlib.crc32(case_id.encode())])
    return sparsify_labels(dense, settings.scheme, settings.fraction, axis=axial_axis(label.direction),
                           ignore_label=settings.ignore_label, rng=rng)


def _write_image(source: Path, target: Path) -> None:
    from medseg.io.nifti import is_nifti
    from medseg.io.reader import read_volume, write_volume
    from medseg.utils.atomic import atomic_path

    if source.is_file() and is_nifti(source) and source.name.endswith(".nii.gz"):
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
    else:
        write_volume(read_volume(source), target)


def write_sparse_dataset(data: str | os.PathLike, out: str | os.PathLike, settings: SparsifySettings) -> dict:
    """Write the partially annotated copy of ``data`` into ``out`` (see the module docstring).

    Returns:
        The ``"sparsify"`` record of ``dataset.json``: settings, ``annotated_fraction`` (voxels not ignored,
        over the whole set) and ``cases`` (case id -> its annotated fraction).

    Raises:
        ConfigError: ``out`` is not a new or empty folder outside ``data``; bad settings.
        DataError: No labelled case, unreadable files or bad label values, boxes for unknown cases.
    """
    from medseg.data.boxes import read_boxes_csv
    from medseg.data.discovery import discover_dataset
    from medseg.data.sparsify import annotated_fraction
    from medseg.io.reader import read_label_map, write_volume
    from medseg.utils.atomic import atomic_write_json

    data, out = Path(data), Path(out)
    _check_out(data, out)
    cases = [c for c in discover_dataset(data) if c.label is not None]
    if not cases:
        raise DataError("no labelled case to sparsify", path=data)
    boxes = read_boxes_csv(settings.boxes_csv) if settings.boxes_csv else None
    unknown = sorted(set(boxes or {}) - {c.case_id for c in cases})
    if unknown:
        raise DataError(f"boxes for case(s) not in the data set: {', '.join(unknown[:5])}", path=settings.boxes_csv)
    fractions, annotated, total, training = {}, 0, 0, []
    for case in cases:
        label = read_label_map(case.label)
        sparse = _sparse_label(label, settings, boxes, case.case_id)
        image_path, label_path = f"imagesTr/{case.case_id}_0000.nii.gz", f"labelsTr/{case.case_id}.nii.gz"
        _write_image(Path(case.image), out / image_path)
        write_volume(label.with_array(sparse), out / label_path, label=True)
        fractions[case.case_id] = annotated_fraction(sparse, settings.ignore_label)
        annotated += int(np.count_nonzero(sparse != settings.ignore_label))
        total += sparse.size
        training.append({"image": image_path, "label": label_path})
    record = {"scheme": settings.scheme, "fraction": settings.fraction, "seed": settings.seed,
              "ignore_label": settings.ignore_label, "source": str(data), "annotated_fraction": annotated / total,
              "cases": fractions}  # fmt: skip
    if settings.scheme == "boxes":
        record.update(boxes=settings.boxes_csv or "tight boxes of the dense lesions", core=settings.core)
    meta = {"name": f"{data.name}-{settings.scheme}", "labels": {"background": 0, "liver": 1, "tumor": 2,
            "ignore": settings.ignore_label}, "numTraining": len(training), "file_ending": ".nii.gz",
            "training": training, "sparsify": record}  # fmt: skip
    atomic_write_json(out / "dataset.json", meta)
    return record
