"""Find the cases of a data set on disk and pair each image with its label by case id.

Supported layouts (detected in this order):

=================  ===========================================================================================
layout             what is recognised
=================  ===========================================================================================
``decathlon``      ``dataset.json`` and/or ``imagesTr/`` (Medical Segmentation Decathlon, e.g. Task03_Liver;
                   also nnU-Net v2 raw data). The ``"training"`` list of ``dataset.json`` is used when present,
                   otherwise ``imagesTr/*.nii[.gz]`` is paired with ``labelsTr/`` by case id
                   (``liver_7_0000.nii.gz`` -> ``liver_7``). ``imagesTs/`` images are unlabeled test cases.
``lits``           ``volume-N.nii[.gz]`` with ``segmentation-N.nii[.gz]`` anywhere below the root (e.g. the
                   ``Training Batch 1/2`` folders); ``test-volume-N.nii`` are unlabeled test cases.
``dicom``          one folder per case below the root, each holding a DICOM series (in any subfolders); the
                   label is ``<case>/segmentation.nii[.gz]`` or ``labels/<case>.nii[.gz]`` (or
                   ``<case>_seg.nii.gz``) beside the case folders.
=================  ===========================================================================================

A Decathlon/nnU-Net ``dataset.json`` may declare an *ignore* label, the value of voxels nobody annotated
(partial annotations, issue #30): ``"labels": {"background": 0, "liver": 1, "tumor": 2, "ignore": 3}``
(nnU-Net v2) or ``{"0": "background", "1": "liver", "2": "tumor", "3": "ignore"}`` (Decathlon);
:attr:`DatasetScan.ignore_label` holds it.

Hidden files (``.*``, such as the macOS ``._liver_0.nii.gz`` copies inside the Task03_Liver archive) are
ignored. Case ids come from :func:`medseg.data.naming.case_id_from_path`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medseg.data.naming import case_id_from_path, is_output_name
from medseg.errors import DataError
from medseg.io.dicom import is_dicom_file
from medseg.io.nifti import is_nifti

__all__ = ["Case", "DatasetScan", "declared_ignore_label", "discover_dataset", "discover_images"]

logger = logging.getLogger(__name__)

_LITS_IMAGE = re.compile(r"^(test-)?volume-\w+\.nii(\.gz)?$", re.IGNORECASE)
_LITS_LABEL = re.compile(r"^segmentation-\w+\.nii(\.gz)?$", re.IGNORECASE)
_LABEL_NAME = re.compile(r"^(segmentation-.*|.*_seg\.nii(\.gz)?)$", re.IGNORECASE)


@dataclass(frozen=True)
class Case:
    """One case of a data set.

    Attributes:
        case_id: Identifier shared by image, label and prediction (see :mod:`medseg.data.naming`).
        image: NIfTI file or DICOM series folder.
        label: Label map (NIfTI), or ``None`` when there is none.
        layout: ``"lits"``, ``"decathlon"`` or ``"dicom"``.
        split: ``"train"`` (a label is expected) or ``"test"`` (unlabeled by design).
    """

    case_id: str
    image: Path
    label: Path | None
    layout: str
    split: str = "train"


@dataclass(frozen=True)
class DatasetScan(Sequence[Case]):
    """What :func:`discover_dataset` found: the cases, label files that match no image, and the ignore value
    ``dataset.json`` declares (``None``: none). It is the sequence of its cases: ``for case in scan``,
    ``len(scan)``, ``scan[0]``."""

    root: Path
    layout: str
    cases: list[Case]
    orphan_labels: list[Path] = field(default_factory=list)
    ignore_label: int | None = None

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index):
        return self.cases[index]


def discover_dataset(root: str | os.PathLike, *, report_orphans: bool = True) -> DatasetScan:
    """The data set under ``root``: its cases sorted by case id (numbers in numeric order), its layout, the
    label files that match no image, and the ignore label ``dataset.json`` declares.

    Args:
        root: The data set folder.
        report_orphans: Log a warning per label file without an image (``False``: the caller reports them
            itself, as ``medseg check`` does).

    Raises:
        DataError: ``root`` is missing, empty, in no supported layout, or two cases share an id.
    """
    scan = _scan(Path(root))
    if report_orphans:
        for path in scan.orphan_labels:
            logger.warning("%s: label without a matching image", path)
    return scan


def _scan(root: Path) -> DatasetScan:
    """:func:`discover_dataset` without the warnings."""
    if not root.exists():
        raise DataError("no such folder", path=root)
    if not root.is_dir():
        raise DataError("expected a data set folder, got a file", path=root)
    if not any(not p.name.startswith(".") for p in root.iterdir()):
        raise DataError("empty folder, no data set here", path=root)
    if (root / "dataset.json").is_file() or (root / "imagesTr").is_dir():
        return _decathlon(root)
    files = _visible_files(root)
    if _has_lits_images(files):
        return _lits(root, files)
    case_dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".") and d.name != "labels"]
    if case_dirs and all(_holds_dicom(d) for d in case_dirs):
        return _dicom_cases(root, case_dirs)
    raise DataError("no data set layout recognised (expected LiTS volume-N.nii/segmentation-N.nii files, Decathlon "
                    "imagesTr/ + labelsTr/ + dataset.json, or one DICOM series folder per case)", path=root)


def discover_images(paths: Iterable[str | os.PathLike]) -> list[tuple[str, Path]]:
    """Scans to predict: ``(case_id, path)`` for NIfTI files, folders of them, DICOM series folders.

    Each path may be a NIfTI file, a DICOM file, a folder holding one DICOM series (the case id is the
    folder name), a data set root (its images, see :func:`discover_dataset`), or a folder of NIfTI files
    and/or DICOM series subfolders. Files that look like label maps (``segmentation-*``, ``*_seg.nii.gz``)
    are skipped in folders.

    Raises:
        DataError: A path is missing or holds no image, or two images share a case id.
    """
    found: list[tuple[str, Path]] = []
    for path in map(Path, paths):
        if not path.exists():
            raise DataError("no such file or folder", path=path)
        if path.is_file():
            if not (is_nifti(path) or is_dicom_file(path)):
                raise DataError("not a NIfTI (.nii, .nii.gz) or DICOM file", path=path)
            if is_nifti(path) and is_output_name(path.name) and not _LABEL_NAME.match(path.name):
                raise DataError("a probability or uncertainty map written by medseg predict, not a CT scan", path=path)
            found.append((case_id_from_path(path), path))
            continue
        found.extend(_images_in_folder(path))
    if not found:
        raise DataError("no images found", path=", ".join(str(p) for p in paths) or "(no paths)")
    _unique_ids([cid for cid, _ in found], [p for _, p in found])
    return found


# --------------------------------------------------------------------------------------------------
# layouts


def _decathlon(root: Path) -> DatasetScan:
    meta_path = root / "dataset.json"
    meta: dict = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"unreadable dataset.json ({exc})", path=meta_path) from None
        if not isinstance(meta, dict):
            raise DataError("dataset.json must hold a JSON object", path=meta_path)
    cases: list[Case] = []
    used_labels: set[Path] = set()
    training = meta.get("training")
    if isinstance(training, list) and training:
        for entry in training:
            if not isinstance(entry, dict) or "image" not in entry:
                raise DataError(f"'training' entries need an 'image' key, got {entry!r}", path=meta_path)
            image = root / entry["image"]
            label = root / entry["label"] if entry.get("label") else None
            cases.append(Case(case_id_from_path(image), image, label, "decathlon"))
            used_labels.add(label)
    else:
        labels = {case_id_from_path(p): p for p in _nifti_in(root / "labelsTr")}
        for image in _nifti_in(root / "imagesTr"):
            cid = case_id_from_path(image)
            cases.append(Case(cid, image, labels.get(cid), "decathlon"))
            used_labels.add(labels.get(cid))
    for image in _nifti_in(root / "imagesTs"):
        cases.append(Case(case_id_from_path(image), image, None, "decathlon", split="test"))
    if not cases:
        raise DataError("Decathlon layout without images (imagesTr/ and imagesTs/ empty, no 'training' list)",
                        path=root)
    orphans = [p for p in _nifti_in(root / "labelsTr") if p not in used_labels]
    return _finish(root, "decathlon", cases, orphans, ignore_label=declared_ignore_label(meta, meta_path))


def declared_ignore_label(meta: dict, path: Path | None = None) -> int | None:
    """The ``"ignore"`` value of a ``dataset.json``'s labels, nnU-Net v2 (name -> value) or Decathlon
    (value -> name) style; ``None`` when it declares none.

    Raises:
        DataError: An ignore entry whose value is not a whole number.
    """
    labels = meta.get("labels")
    if not isinstance(labels, dict):
        return None
    if "ignore" in labels:
        value = labels["ignore"]
    else:
        value = next((k for k, v in labels.items() if str(v).strip().lower() == "ignore"), None)
        if value is None:
            return None
    try:
        number = int(str(value))
    except ValueError:
        raise DataError(f"dataset.json: the 'ignore' label must be a whole number, got {value!r}", path=path) from None
    return number


def _lits(root: Path, files: list[Path]) -> DatasetScan:
    images, labels = {}, {}
    for path in sorted(files):
        if not is_nifti(path):
            continue
        if _LITS_IMAGE.match(path.name):
            _unique_ids([case_id_from_path(path)], [path], seen=images)
        elif _LITS_LABEL.match(path.name):
            _unique_ids([case_id_from_path(path)], [path], seen=labels)
    cases = [Case(cid, image, labels.get(cid), "lits",
                  split="test" if image.name.lower().startswith("test-") else "train")
             for cid, image in images.items()]
    orphans = [p for cid, p in labels.items() if cid not in images]
    return _finish(root, "lits", cases, orphans)


def _dicom_cases(root: Path, case_dirs: list[Path]) -> DatasetScan:
    label_dir = root / "labels"
    side_labels = {case_id_from_path(p): p for p in _nifti_in(label_dir)}
    cases = []
    for folder in case_dirs:
        inside = [folder / name for name in ("segmentation.nii.gz", "segmentation.nii")]
        label = next((p for p in inside if p.is_file()), side_labels.get(folder.name))
        cases.append(Case(folder.name, folder, label, "dicom"))
    orphans = [p for cid, p in side_labels.items() if cid not in {c.case_id for c in cases}]
    return _finish(root, "dicom", cases, orphans)


def _images_in_folder(folder: Path) -> list[tuple[str, Path]]:
    if ((folder / "dataset.json").is_file() or (folder / "imagesTr").is_dir()
            or _has_lits_images(_visible_files(folder))):  # also a LiTS root holding "Training Batch N/" folders
        return [(c.case_id, c.image) for c in discover_dataset(folder)]
    # medseg predict's own outputs (an earlier run into this folder) are never scans
    entries = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".") and not is_output_name(p.name)]
    if any(p.is_file() and is_dicom_file(p) for p in entries):
        return [(folder.name, folder)]  # the folder itself is a series
    found = [(case_id_from_path(p), p) for p in entries
             if p.is_file() and is_nifti(p) and not _LABEL_NAME.match(p.name)]
    found += [(p.name, p) for p in entries if p.is_dir() and _holds_dicom(p)]
    return found


# --------------------------------------------------------------------------------------------------
# helpers


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _visible_files(root: Path) -> list[Path]:
    """Every file below ``root`` outside hidden folders; an unreadable folder is logged, not skipped silently."""

    def warn(exc: OSError) -> None:
        logger.warning("%s: cannot read folder (%s); the files in it are not included", exc.filename,
                       exc.strerror or exc)

    found = []
    for folder, subfolders, names in os.walk(root, onerror=warn):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        found += [Path(folder) / n for n in names if not n.startswith(".")]
    return found


def _has_lits_images(files: list[Path]) -> bool:
    return any(_LITS_IMAGE.match(p.name) for p in files)


def _nifti_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir()) if p.is_file() and is_nifti(p) and not p.name.startswith(".")]


def _holds_dicom(folder: Path) -> bool:
    return any(p.is_file() and is_dicom_file(p) for p in _visible_files(folder))


def _unique_ids(ids: list[str], paths: list[Path], seen: dict[str, Path] | None = None) -> dict[str, Path]:
    seen = {} if seen is None else seen
    for cid, path in zip(ids, paths):
        if cid in seen:
            raise DataError(f"case id {cid!r} is used by both {seen[cid]} and {path}", path=path.parent)
        seen[cid] = path
    return seen


def _natural_key(case: Case) -> list:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", case.case_id) if t]


def _finish(root: Path, layout: str, cases: list[Case], orphans: list[Path], *,
            ignore_label: int | None = None) -> DatasetScan:
    _unique_ids([c.case_id for c in cases], [c.image for c in cases])
    cases = sorted(cases, key=_natural_key)
    logger.debug("%s: %s layout, %d cases, %d orphan labels", root, layout, len(cases), len(orphans))
    return DatasetScan(root=root, layout=layout, cases=cases, orphan_labels=sorted(orphans),
                       ignore_label=ignore_label)
