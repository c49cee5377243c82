"""Pair prediction files with reference label maps by case id, and check that their grids agree.

References may be a LiTS-layout data set (``segmentation-N.nii[.gz]`` beside ``volume-N``), a Medical
Segmentation Decathlon task (``labelsTr/*.nii.gz``) or a plain folder of label maps. Predictions are
``<case>_seg.nii.gz`` as written by ``medseg predict`` or any NIfTI whose case id
(:func:`medseg.data.naming.case_id_from_path`) matches a reference. Scans (``volume-*``, ``imagesTr``)
are never taken for labels. A reference may also be a DICOM SEG file (``<case>.dcm``), placed on its
prediction's grid when read. "The same grid" is world geometry: a prediction stored in another voxel order
than its reference (LAS against L,P,I, permuted axes) matches it (:func:`medseg.io.orientation.align_to`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.data.naming import case_id_from_path
from medseg.errors import DataError
from medseg.io.nifti import is_nifti

__all__ = ["CasePair", "check_pair_geometry", "match_cases", "prediction_files"]


@dataclass(frozen=True)
class CasePair:
    """A reference label map and its prediction (``None`` when the prediction is missing)."""

    case: str
    ref: Path
    pred: Path | None


def _nifti_files(folder: Path, *, seg: bool = False) -> list[Path]:
    """NIfTI files of ``folder`` (and DICOM SEG files with ``seg=True``), sorted."""
    from medseg.io.dicom_seg_reader import is_dicom_seg

    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and (is_nifti(p) or (seg and p.name.lower().endswith(".dcm") and is_dicom_seg(p))))


def _index(files: list[Path], what: str, folder: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in files:
        case = case_id_from_path(path)
        if case in index:
            raise DataError(f"two {what} files for case {case!r}: {index[case].name} and {path.name}", path=folder)
        index[case] = path
    return index


def reference_files(ref_dir: str | os.PathLike) -> dict[str, Path]:
    """Reference label maps of ``ref_dir`` by case id (LiTS, Decathlon or plain folder layout)."""
    root = Path(ref_dir)
    if not root.is_dir():
        raise DataError("reference folder not found" if not root.exists() else "not a folder", path=root)
    if (root / "labelsTr").is_dir():
        files = _nifti_files(root / "labelsTr")
    else:
        files = _nifti_files(root, seg=True)
        if any(p.name.lower().startswith("segmentation-") for p in files):
            files = [p for p in files if p.name.lower().startswith("segmentation-")]
        files = [p for p in files if not p.name.lower().startswith(("volume-", "test-volume-"))]
    if not files:
        raise DataError("no reference label maps (*.nii, *.nii.gz, DICOM SEG *.dcm) found", path=root)
    return _index(files, "reference", root)


def prediction_files(pred_dir: str | os.PathLike) -> dict[str, Path]:
    """Predicted label maps of ``pred_dir`` by case id: NIfTI files and DICOM SEG files (``<case>_seg.dcm``,
    as ``medseg predict --format dicom-seg`` writes them). A case predicted in both formats (DICOM input
    gets both) is read from its NIfTI file; two files of one format for one case are an error.

    Raises:
        DataError: The folder holds no prediction at all (never scored as empty predictions), or two
            predictions of one format share a case id.
    """
    root = Path(pred_dir)
    files = _nifti_files(root, seg=True)
    if not files:
        raise DataError("no predicted label maps (*_seg.nii.gz, *.nii, DICOM SEG *_seg.dcm) found", path=root)
    nifti = _index([p for p in files if is_nifti(p)], "prediction", root)
    seg = _index([p for p in files if not is_nifti(p)], "DICOM SEG prediction", root)
    return {**seg, **nifti}


def match_cases(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike) -> tuple[list[CasePair], list[Path]]:
    """Pair every reference with its prediction.

    Two files (a prediction and its reference label map or DICOM SEG) are one case, named after the
    reference.

    Returns:
        ``(pairs, unmatched_predictions)``: one :class:`CasePair` per reference case (``pred=None`` when
        missing), in case-id order, and prediction files whose case id has no reference.
    """
    pred_root = Path(pred_dir)
    if pred_root.is_file() and Path(ref_dir).is_file():
        return [CasePair(case_id_from_path(ref_dir), Path(ref_dir), pred_root)], []
    if not pred_root.is_dir():
        raise DataError("prediction folder not found" if not pred_root.exists() else "not a folder", path=pred_root)
    refs = reference_files(ref_dir)
    preds = prediction_files(pred_root)
    pairs = [CasePair(case, refs[case], preds.get(case)) for case in sorted(refs, key=_natural_key)]
    unmatched = [path for case, path in sorted(preds.items()) if case not in refs]
    return pairs, unmatched


def _natural_key(case: str) -> tuple:
    return (0, int(case), "") if case.isdigit() else (1, 0, case)


def check_pair_geometry(pair: CasePair, *, atol_mm: float = 0.05) -> str | None:
    """Compare the NIfTI headers of a pair; return a one-line problem description or ``None`` if they agree."""
    if pair.pred is None or not (is_nifti(pair.ref) and is_nifti(pair.pred)):  # a SEG is placed on the other grid
        return None
    try:
        ref, pred = nib.load(pair.ref), nib.load(pair.pred)
    except Exception as exc:  # unreadable headers are reported per case, like a mismatch
        return f"case {pair.case}: cannot read header ({exc})"
    from medseg.io.orientation import align_to, describe_geometry
    from medseg.io.volume import Volume

    try:  # zero-stride arrays: header geometry only, nothing allocated
        ref_vol, pred_vol = (Volume(np.broadcast_to(np.zeros((), bool), img.shape[:3]), img.affine,
                                    {"path": str(path)}) for img, path in ((ref, pair.ref), (pred, pair.pred)))
    except ValueError as exc:
        return f"case {pair.case}: invalid header geometry ({' '.join(str(exc).split())})"
    if align_to(pred_vol, ref_vol, atol_mm=atol_mm, required=False) is not None:
        return None
    return (f"case {pair.case}: prediction {pair.pred} ({describe_geometry(pred_vol)}) is not on the grid of the "
            f"reference {pair.ref} ({describe_geometry(ref_vol)})")
