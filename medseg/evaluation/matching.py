"""Pair prediction files with reference label maps by case id, and check that their grids agree.

References may be a LiTS-layout data set (``segmentation-N.nii[.gz]`` beside ``volume-N``), a Medical
Segmentation Decathlon task (``labelsTr/*.nii.gz``) or a plain folder of label maps. Predictions are
``<case>_seg.nii.gz`` as written by ``medseg predict`` or any NIfTI whose case id
(:func:`medseg.data.naming.case_id_from_path`) matches a reference. Scans (``volume-*``, ``imagesTr``)
are never taken for labels.
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

__all__ = ["CasePair", "check_pair_geometry", "match_cases"]


@dataclass(frozen=True)
class CasePair:
    """A reference label map and its prediction (``None`` when the prediction is missing)."""

    case: str
    ref: Path
    pred: Path | None


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_nifti(p) and not p.name.startswith("."))


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
        files = _nifti_files(root)
        if any(p.name.lower().startswith("segmentation-") for p in files):
            files = [p for p in files if p.name.lower().startswith("segmentation-")]
        files = [p for p in files if not p.name.lower().startswith(("volume-", "test-volume-"))]
    if not files:
        raise DataError("no reference label maps (*.nii, *.nii.gz) found", path=root)
    return _index(files, "reference", root)


def match_cases(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike) -> tuple[list[CasePair], list[Path]]:
    """Pair every reference with its prediction.

    Returns:
        ``(pairs, unmatched_predictions)``: one :class:`CasePair` per reference case (``pred=None`` when
        missing), in case-id order, and prediction files whose case id has no reference.
    """
    pred_root = Path(pred_dir)
    if not pred_root.is_dir():
        raise DataError("prediction folder not found" if not pred_root.exists() else "not a folder", path=pred_root)
    refs = reference_files(ref_dir)
    preds = _index(_nifti_files(pred_root), "prediction", pred_root)
    pairs = [CasePair(case, refs[case], preds.get(case)) for case in sorted(refs, key=_natural_key)]
    unmatched = [path for case, path in sorted(preds.items()) if case not in refs]
    return pairs, unmatched


def _natural_key(case: str) -> tuple:
    return (0, int(case), "") if case.isdigit() else (1, 0, case)


def check_pair_geometry(pair: CasePair, *, atol_mm: float = 1e-3) -> str | None:
    """Compare the NIfTI headers of a pair; return a one-line problem description or ``None`` if they agree."""
    if pair.pred is None:
        return None
    try:
        ref, pred = nib.load(pair.ref), nib.load(pair.pred)
    except Exception as exc:  # unreadable headers are reported per case, like a mismatch
        return f"case {pair.case}: cannot read header ({exc})"
    ref_shape, pred_shape = tuple(ref.shape[:3]), tuple(pred.shape[:3])
    if ref_shape != pred_shape:
        return f"case {pair.case}: prediction {pair.pred.name} has shape {pred_shape}, reference {ref_shape}"
    if not np.allclose(ref.affine, pred.affine, atol=atol_mm):
        ref_sp = tuple(round(float(s), 4) for s in np.linalg.norm(ref.affine[:3, :3], axis=0))
        pred_sp = tuple(round(float(s), 4) for s in np.linalg.norm(pred.affine[:3, :3], axis=0))
        return (
            f"case {pair.case}: prediction {pair.pred.name} is on a different grid than the reference "
            f"(spacing {pred_sp} vs {ref_sp} mm, origin {tuple(np.round(pred.affine[:3, 3], 2))} vs "
            f"{tuple(np.round(ref.affine[:3, 3], 2))})"
        )
    return None
