"""Cross-validation folds: by case, by patient (CSV or DICOM PatientID), and the user's own split."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from medseg.data import make_phantom
from medseg.errors import ConfigError, DataError
from medseg.io import write_dicom_series
from medseg.training.config import DataConfig
from medseg.training.splits import make_folds, patient_groups, read_splits, split_for

IDS = [str(i) for i in range(10)]
#: 10 scans of 5 patients: baseline and follow-up each (p1 has three, p4 one)
PATIENT = {"0": "p0", "1": "p0", "2": "p1", "3": "p1", "4": "p1", "5": "p2", "6": "p2", "7": "p3", "8": "p3",
           "9": "p4"}  # fmt: skip


@dataclass(frozen=True)
class _Case:
    case_id: str
    image: Path


def test_folds_by_case_validate_every_case_once_and_are_seeded():
    folds = make_folds(IDS, n_folds=3, seed=0)
    assert sorted(c for f in folds for c in f["val"]) == sorted(IDS)
    assert all(set(f["train"]) == set(IDS) - set(f["val"]) for f in folds)
    assert folds == make_folds(list(reversed(IDS)), n_folds=3, seed=0)  # order of discovery does not matter
    assert folds != make_folds(IDS, n_folds=3, seed=1)


def test_folds_by_patient_keep_each_patient_in_one_fold():
    folds = make_folds(IDS, n_folds=3, seed=0, groups=PATIENT)
    assert sorted(c for f in folds for c in f["val"]) == sorted(IDS)
    for fold in folds:
        val_patients = {PATIENT[c] for c in fold["val"]}
        assert not val_patients & {PATIENT[c] for c in fold["train"]}  # no patient on both sides
    # by hand: the sorted patients permuted by the seeded generator, cut in 3 parts
    patients = sorted(set(PATIENT.values()))
    parts = np.array_split(np.random.default_rng(0).permutation(len(patients)), 3)
    expected = [sorted(c for c in IDS if PATIENT[c] in {patients[i] for i in part}) for part in parts]
    assert [f["val"] for f in folds] == expected
    with pytest.raises(DataError, match="5 patients cannot make 6 folds"):
        make_folds(IDS, n_folds=6, seed=0, groups=PATIENT)
    with pytest.raises(DataError, match="no patient id for case"):
        make_folds([*IDS, "10"], n_folds=3, groups=PATIENT)


def test_read_splits_checks_the_file(tmp_path):
    folds = make_folds(IDS, n_folds=2, seed=5)
    path = tmp_path / "splits_final.json"
    path.write_text(json.dumps(folds))
    assert read_splits(path, IDS, n_folds=2) == folds
    assert read_splits(path, [*IDS, "extra"], n_folds=2) == folds  # cases outside the split are not used
    bad = {
        "3 folds in the file but data.folds is 2": [*folds, folds[0]],
        "case\\(s\\) 99 are not labelled cases": [{"train": ["99"], "val": ["0"]}, folds[1]],
        "in both train and val": [{"train": ["0", "1"], "val": ["1"]}, folds[1]],
        "is validated by folds 0 and 1": [{"train": [], "val": ["0"]}, {"train": [], "val": ["0"]}],
    }
    for message, content in bad.items():
        path.write_text(json.dumps(content))
        with pytest.raises(DataError, match=message):
            read_splits(path, IDS, n_folds=2)
    path.write_text("{not json")
    with pytest.raises(DataError, match="not a splits file"):
        read_splits(path, IDS, n_folds=2)


def test_patient_groups_from_a_csv_and_from_dicom_patient_ids(tmp_path):
    table = tmp_path / "patients.csv"
    table.write_text("case,patient\n" + "".join(f"{c},{p}\n" for c, p in PATIENT.items()))
    assert patient_groups([], csv_path=table) == PATIENT
    table.write_text("case,patient\n0,p0\n0,p9\n")
    with pytest.raises(DataError, match="case 0 has two patients"):
        patient_groups([], csv_path=table)
    cases = []
    for index, patient in ((0, "A-17"), (1, "A-17"), (2, "B-03")):
        folder = tmp_path / f"case{index}"
        write_dicom_series(make_phantom(size="tiny", seed=0, index=index).image, folder, patient_id=patient)
        cases.append(_Case(str(index), folder))
    assert patient_groups(cases) == {"0": "A-17", "1": "A-17", "2": "B-03"}
    nifti = tmp_path / "volume-5.nii.gz"
    nifti.write_bytes(b"")
    with pytest.raises(DataError, match="no DICOM PatientID to group by"):
        patient_groups([_Case("5", nifti)])


def test_split_for_the_pipeline_settings(tmp_path):
    cases = [_Case(c, tmp_path) for c in IDS]
    table = tmp_path / "patients.csv"
    table.write_text("case,patient\n" + "".join(f"{c},{p}\n" for c, p in PATIENT.items()))
    grouped = split_for(DataConfig(folds=3, group_by="patient", patients_csv=str(table)), cases)
    assert grouped == make_folds(IDS, n_folds=3, seed=0, groups=PATIENT)
    path = tmp_path / "splits.json"
    path.write_text(json.dumps(grouped))
    assert split_for(DataConfig(folds=3, splits=str(path)), cases) == grouped
    with pytest.raises(ConfigError, match=r"leave data\.group_by at case"):
        split_for(DataConfig(folds=3, splits=str(path), group_by="patient"), cases)
