"""Cross-validation folds: seeded K-fold by case or by patient, or the user's own split.

* By case (default): nnU-Net's deterministic K-fold of the sorted case ids (Isensee et al. 2021).
* By patient (``data.group_by: patient``): the same split of the sorted **patient** ids, every case of a
  patient in one fold, so follow-up scans of one patient never sit on both sides of a fold. Patient ids
  come from a CSV (``data.patients_csv``: columns ``case`` and ``patient``) or, without one, from the
  DICOM PatientID of DICOM-series cases.
* The user's split (``data.splits``): a JSON list of ``{"train": [...], "val": [...]}``, one entry per
  fold, nnU-Net's ``splits_final.json`` format, checked against the data set.

Every split is saved as ``folds.json`` in each fold's run folder, so all folds of a data set agree.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ConfigError, DataError

__all__ = ["GROUP_BY", "make_folds", "patient_groups", "read_splits", "split_for"]

#: ``data.group_by`` values.
GROUP_BY = ("case", "patient")


def make_folds(case_ids: Sequence[str], *, n_folds: int = 5, seed: int = 0,
               groups: Mapping[str, str] | None = None) -> list[dict[str, list[str]]]:
    """Deterministic K-fold split: ``[{"train": [...], "val": [...]}, ...]``.

    The sorted unit ids (cases, or the ``groups`` values: case id -> patient id) are shuffled with
    ``numpy.random.default_rng(seed)`` and cut into ``n_folds`` nearly equal parts; fold ``k`` validates on
    the cases of part ``k``. Every case is validated exactly once; a group's cases share one fold.

    Raises:
        DataError: Fewer units than folds, or a case without a group.
    """
    ids = sorted(set(case_ids))
    if groups is not None:
        ungrouped = [c for c in ids if c not in groups]
        if ungrouped:
            raise DataError(f"no patient id for case(s) {', '.join(ungrouped[:5])}")
    units = sorted({groups[c] for c in ids}) if groups is not None else ids
    what = "patients" if groups is not None else "labelled cases"
    if len(units) < n_folds:
        raise DataError(f"{len(units)} {what} cannot make {n_folds} folds (set data.folds lower)")
    order = np.random.default_rng(seed).permutation(len(units))
    folds = []
    for part in np.array_split(order, n_folds):
        chosen = {units[i] for i in part}
        val = sorted(c for c in ids if (groups[c] if groups is not None else c) in chosen)
        folds.append({"train": [c for c in ids if c not in set(val)], "val": val})
    return folds


def read_splits(path: str | os.PathLike, case_ids: Sequence[str], *, n_folds: int) -> list[dict[str, list[str]]]:
    """The user's folds from a JSON file (nnU-Net's ``splits_final.json`` format), checked.

    Raises:
        DataError: Unreadable file, not ``n_folds`` entries, an unknown case id, a case in both train and
            val of a fold, or a case validated by two folds (one line naming the file).
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        folds = [{"train": sorted(map(str, f["train"])), "val": sorted(map(str, f["val"]))} for f in raw]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"not a splits file (a JSON list of {{'train': [...], 'val': [...]}}): {exc}",
                        path=path) from None
    if len(folds) != n_folds:
        raise DataError(f"{len(folds)} folds in the file but data.folds is {n_folds}", path=path)
    known, seen = set(case_ids), {}
    for k, fold in enumerate(folds):
        unknown = sorted(set(fold["train"] + fold["val"]) - known)
        if unknown:
            raise DataError(f"fold {k}: case(s) {', '.join(unknown[:5])} are not labelled cases of the data set",
                            path=path)  # fmt: skip
        both = sorted(set(fold["train"]) & set(fold["val"]))
        if both:
            raise DataError(f"fold {k}: case(s) {', '.join(both[:5])} in both train and val", path=path)
        for case in fold["val"]:
            if case in seen:
                raise DataError(f"case {case} is validated by folds {seen[case]} and {k}", path=path)
            seen[case] = k
    return folds


def patient_groups(cases: Sequence[Any], *, csv_path: str | os.PathLike | None = None) -> dict[str, str]:
    """Case id -> patient id, from ``csv_path`` (columns ``case``, ``patient``) or the cases' DICOM PatientID.

    Raises:
        DataError: Unreadable CSV or missing columns; without a CSV, a case that is not a DICOM series or
            has no PatientID.
    """
    if csv_path is not None:
        return _groups_from_csv(Path(csv_path))
    import pydicom

    groups = {}
    for case in cases:
        image = Path(case.image)
        files = sorted(p for p in image.iterdir() if p.is_file()) if image.is_dir() else []
        patient = None
        for file in files[:5]:
            try:
                patient = str(pydicom.dcmread(file, stop_before_pixels=True).get("PatientID", "")).strip() or None
                break
            except Exception:
                continue
        if patient is None:
            raise DataError(f"case {case.case_id}: no DICOM PatientID to group by (give data.patients_csv, columns "
                            "case,patient)", path=image)  # fmt: skip
        groups[case.case_id] = patient
    return groups


def _groups_from_csv(path: Path) -> dict[str, str]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read the patient table ({exc})", path=path) from None
    if not rows or not {"case", "patient"} <= set(rows[0]):
        raise DataError("the patient table needs the columns case and patient", path=path)
    groups: dict[str, str] = {}
    for row in rows:
        case, patient = str(row["case"]).strip(), str(row["patient"]).strip()
        if not case or not patient:
            raise DataError(f"empty case or patient in row {row}", path=path)
        if groups.get(case, patient) != patient:
            raise DataError(f"case {case} has two patients ({groups[case]}, {patient})", path=path)
        groups[case] = patient
    return groups


def split_for(data: Any, cases: Sequence[Any]) -> list[dict[str, list[str]]]:
    """The folds of a data set under the pipeline's ``data`` section (``splits``, ``group_by``,
    ``patients_csv``, ``folds``, ``fold_seed``).

    Raises:
        ConfigError: An unknown ``group_by``, or ``splits`` together with ``group_by: patient``.
    """
    ids = [c.case_id for c in cases]
    if data.group_by not in GROUP_BY:
        raise ConfigError(f"data.group_by must be one of {list(GROUP_BY)}, got {data.group_by!r}")
    if data.splits is not None:
        if data.group_by != "case":
            raise ConfigError("data.splits gives the folds itself: leave data.group_by at case")
        return read_splits(data.splits, ids, n_folds=data.folds)
    groups = patient_groups(cases, csv_path=data.patients_csv) if data.group_by == "patient" else None
    return make_folds(ids, n_folds=data.folds, seed=data.fold_seed, groups=groups)
