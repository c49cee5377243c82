"""The bad-input corpus: every broken input gives one line naming the file and the problem, through the
API and through the CLI (exit status 2, no traceback), and no input file is changed."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.cli import main
from medseg.data import check_dataset, make_phantom
from medseg.errors import DataError
from medseg.io import Volume, read_volume, write_dicom_series, write_volume


def _phantom():
    return make_phantom(size="tiny", seed=0, index=3)


def _lits(root: Path, image: Volume | None, label: Volume | None, *, float_label: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if image is not None:
        write_volume(image, root / "volume-0.nii.gz")
    if label is not None:
        write_volume(label, root / "segmentation-0.nii.gz", label=not float_label)
    return root


# Each builder makes a data set under `root` and returns (data set root, broken file or folder, problem text,
# whether read_volume itself must fail on the broken path).
def truncated_nifti(root):
    case = _phantom()
    _lits(root, case.image, case.label)
    path = root / "volume-0.nii.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    return root, path, "unreadable or truncated NIfTI file", True


def text_named_nii(root):
    _lits(root, None, _phantom().label)
    path = root / "volume-0.nii"
    path.write_text("patient scan, see PACS\n")
    return root, path, "unreadable or truncated NIfTI file", True


def image_2d(root):
    _lits(root, None, _phantom().label)
    path = root / "volume-0.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((48, 48), np.int16), np.eye(4)), path)
    return root, path, "expected a 3D image, got 2D", True


def shape_mismatch(root):
    case = _phantom()
    _lits(root, case.image, Volume(case.label.array[:, :, 1:], case.label.affine))
    return root, root / "segmentation-0.nii.gz", "label shape", False


def affine_mismatch(root):
    case = _phantom()
    affine = case.label.affine.copy()
    affine[:3, 3] += [0.0, 0.0, 12.0]
    _lits(root, case.image, Volume(case.label.array, affine))
    return root, root / "segmentation-0.nii.gz", "label origin", False


def float_labels(root):
    case = _phantom()
    _lits(root, case.image, case.label.with_array(case.label.array.astype(np.float32) * 0.75), float_label=True)
    return root, root / "segmentation-0.nii.gz", "non-integer label values", False


def label_three(root):
    case = _phantom()
    _lits(root, case.image, case.label.with_array(np.where(case.label.array == 2, 3, case.label.array)))
    return root, root / "segmentation-0.nii.gz", "label values 3 outside {0, 1, 2}", False


def nan_image(root):
    case = _phantom()
    values = case.image.array.astype(np.float32)
    values[10, 10, 5] = np.nan
    _lits(root, case.image.with_array(values), case.label)
    return root, root / "volume-0.nii.gz", "1 NaN/inf voxels", False


def empty_folder(root):
    root.mkdir(parents=True)
    return root, root, "empty folder", True


def dicom_missing_slice(root):
    folder = write_dicom_series(_phantom().image, root / "patient1")
    sorted(folder.iterdir())[6].unlink()
    return root, folder, "missing slice(s)", True


def dicom_two_series(root):
    image = _phantom().image
    write_dicom_series(image, root / "patient1" / "arterial", series_uid="1.2.3.1")
    write_dicom_series(image, root / "patient1" / "venous", series_uid="1.2.3.2")
    return root, root / "patient1", "2 DICOM series in one folder: 1.2.3.1", True


CORPUS = [truncated_nifti, text_named_nii, image_2d, shape_mismatch, affine_mismatch, float_labels, label_three,
          nan_image, empty_folder, dicom_missing_slice, dicom_two_series]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {lines}"
    return lines[0]


@pytest.mark.parametrize("build", CORPUS, ids=lambda f: f.__name__)
def test_api_names_file_and_problem(tmp_path, build):
    root, bad, problem, read_fails = build(tmp_path / "data")
    before = _hashes(root)
    if read_fails:
        with pytest.raises(DataError) as info:
            read_volume(bad)
        message = _one_line(str(info.value))
        assert message.startswith(f"{bad}: ") and problem in message
    if build is not empty_folder:
        report = check_dataset(root, workers=1, progress=False)
        hits = [p for p in report.errors if p.path == str(bad) and problem in p.message]
        assert len(hits) == 1, report.format_table()
        assert "\n" not in hits[0].message
    else:
        with pytest.raises(DataError, match=f"{root}: empty folder"):
            check_dataset(root)
    assert _hashes(root) == before


@pytest.mark.parametrize("build", CORPUS, ids=lambda f: f.__name__)
def test_cli_in_process_exit_2_one_line(tmp_path, capsys, build):
    """``medseg.cli.main`` is what ``python -m medseg`` runs; the subprocess tests below confirm the process."""
    root, bad, problem, _ = build(tmp_path / "data")
    before = _hashes(root)
    assert main(["check", str(root), "--workers", "1"]) == 2
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    assert line.startswith("medseg check: error: ") and "Traceback" not in captured.err + captured.out
    if build is empty_folder:
        assert line == f"medseg check: error: {root}: empty folder, no data set here"
    else:
        rows = [r for r in captured.out.splitlines() if r.startswith("error") and problem in r]
        assert len(rows) == 1 and str(bad.relative_to(root)) in rows[0]
    assert _hashes(root) == before


def _run_cli(build, tmp_path):
    root, bad, problem, _ = build(tmp_path / "data")
    before = _hashes(root)
    run = subprocess.run([sys.executable, "-m", "medseg", "check", str(root), "--workers", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr + run.stdout
    _one_line(run.stderr)
    assert problem in run.stdout + run.stderr and bad.name in run.stdout + run.stderr
    assert _hashes(root) == before


def test_cli_subprocess(tmp_path):
    _run_cli(truncated_nifti, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("build", CORPUS, ids=lambda f: f.__name__)
def test_cli_subprocess_whole_corpus(tmp_path, build):
    _run_cli(build, tmp_path)
