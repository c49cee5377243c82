"""``check_dataset``: every injected problem is found once, with the right check and severity."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medseg.data import Case, SpacingLimits, check_case, check_dataset, make_phantom
from medseg.io import LabelMapping, Volume, write_dicom_series, write_volume


def _hashes(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _write(root: Path, cid: str, image: Volume | None, label: Volume | None, *, float_label: bool = False) -> None:
    if image is not None:
        write_volume(image, root / f"volume-{cid}.nii.gz")
    if label is not None:
        write_volume(label, root / f"segmentation-{cid}.nii.gz", label=not float_label)


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Twelve tiny cases, each with one known problem (case "0" is clean)."""
    root = tmp_path_factory.mktemp("broken")
    case = make_phantom(size="tiny", seed=0, index=3)  # 3 lesions
    img, lab = case.image, case.label
    shifted = lab.affine.copy()
    shifted[:3, 3] += [5.0, 0.0, 0.0]
    flipped = lab.affine @ np.diag([-1.0, 1.0, 1.0, 1.0])
    nan_image = img.array.astype(np.float32)
    nan_image[3, 4, 5] = np.nan
    half = lab.array.astype(np.float32)
    half[half == 2] = 1.5
    _write(root, "0", img, lab)
    _write(root, "1", img, Volume(lab.array, shifted))
    _write(root, "2", img, lab.with_array(np.where(lab.array == 2, 3, lab.array).astype(np.uint8)))
    _write(root, "3", img.with_array(nan_image), lab)
    _write(root, "4", img, None)
    _write(root, "5", img, lab.with_array(np.zeros_like(lab.array)))
    _write(root, "6", img.with_array(np.full(img.shape, 40, np.int16)), lab)
    _write(root, "7", img.with_array((img.array.astype(np.int32) + 1024).astype(np.int16)), lab)
    _write(root, "8", img, lab, float_label=False)
    raw = (root / "volume-8.nii.gz").read_bytes()
    (root / "volume-8.nii.gz").write_bytes(raw[: len(raw) // 2])  # truncated
    _write(root, "9", img, lab.with_array(half), float_label=True)
    _write(root, "10", img, Volume(lab.array[:, :, :-1], lab.affine))
    _write(root, "11", img, Volume(lab.array[::-1].copy(), flipped))  # same world content, other direction
    (root / "segmentation-99.nii.gz").write_bytes((root / "segmentation-0.nii.gz").read_bytes())  # orphan
    return root


EXPECTED = {
    ("1", "geometry", "error"),
    ("2", "label_values", "error"),
    ("3", "non_finite", "error"),
    ("4", "missing", "error"),
    ("5", "no_liver", "warning"),
    ("6", "hu_range", "error"),
    ("7", "hu_range", "error"),
    ("8", "read", "error"),
    ("9", "label_values", "error"),
    ("10", "geometry", "error"),
    ("11", "geometry", "error"),
    ("", "orphan", "warning"),
}


def test_every_injected_problem_reported_once(broken):
    before = _hashes(broken)
    report = check_dataset(broken, workers=2, progress=False, limits=SpacingLimits(in_plane_mm=(0.1, 10),
                                                                                 slice_mm=(0.1, 12)))
    found = [(p.case_id, p.check, p.severity) for p in report.problems]
    assert sorted(found) == sorted(EXPECTED)
    assert report.n_cases == 12 and not report.ok and len(report.errors) == 10 and len(report.warnings) == 2
    msg = {p.case_id: p.message for p in report.problems}
    assert "label origin" in msg["1"] and "differs from image origin" in msg["1"]
    assert msg["2"].startswith("label values 3 outside {0, 1, 2}; a map from another tool? map its values with "
                               "--labels")
    assert msg["3"] == "1 NaN/inf voxels"
    assert "constant image (every voxel is 40)" in msg["6"]
    assert "raw stored values" in msg["7"]
    assert "truncated" in msg["8"]
    n_half = int(np.count_nonzero(make_phantom(size="tiny", seed=0, index=3).label.array == 2))
    assert n_half > 0
    assert msg["9"].startswith(f"{n_half} non-integer label values (e.g. 1.5)")
    assert "label shape" in msg["10"] and "label direction" in msg["11"]
    assert _hashes(broken) == before, "check must not modify its inputs"


def test_clean_phantom_only_spacing_warnings(tiny_dataset):
    report = check_dataset(tiny_dataset, workers=1, progress=False)
    assert report.ok and report.layout == "lits" and report.n_cases == 4
    assert sorted((p.case_id, p.check) for p in report.warnings) == [(str(i), "spacing") for i in range(4)]
    table = report.format_table()
    assert table.splitlines()[0].split()[:4] == ["SEVERITY", "CASE", "CHECK", "FILE"]
    assert table.endswith("4 cases, 0 errors, 4 warnings")
    frame = report.to_dataframe()
    assert list(frame.columns) == ["case_id", "path", "severity", "check", "message"] and len(frame) == 4


def _case(tmp_path: Path, array: np.ndarray, spacing=(0.8, 0.8, 2.5)) -> Case:
    path = tmp_path / "volume-1.nii.gz"
    write_volume(Volume(array, np.diag([*spacing, 1.0])), path)
    return Case("1", path, None, "lits", split="test")


@pytest.mark.parametrize(
    ("make", "spacing", "expected"),
    [
        (lambda a: a, (0.8, 0.8, 2.5), []),
        (lambda a: a, (0.01, 0.8, 2.5), [("error", "spacing", "implausible voxel size")]),
        (lambda a: a, (0.8, 0.8, 8.0), [("warning", "spacing", "slice spacing outside the usual 0.4..6 mm")]),
        (lambda a: (a / 1000.0).astype(np.float32), (0.8, 0.8, 2.5), [("error", "hu_range", "already normalised")]),
        (lambda a: a + 900, (0.8, 0.8, 2.5), [("warning", "hu_range", "no air in the scan")]),
        (lambda a: np.where(a > 1000, 6000, a), (0.8, 0.8, 2.5), [("warning", "hu_range", "above 4000")]),
    ],
)
def test_single_image_checks(tmp_path, make, spacing, expected):
    rng = np.random.default_rng(0)
    base = np.concatenate([np.full(300, -1000), rng.integers(-100, 200, 600), np.full(100, 1200)]).astype(np.int16)
    case = _case(tmp_path, make(base.reshape(10, 10, 10)), spacing)
    problems = check_case(case)
    assert [(p.severity, p.check) for p in problems] == [(s, c) for s, c, _ in expected]
    for problem, (_, _, text) in zip(problems, expected):
        assert text in problem.message


def test_cli_phantom_then_check(tmp_path, capsys):
    """In-process (``medseg.cli.main``, what ``python -m medseg`` runs) to keep the test fast."""
    from medseg.cli import main

    out = tmp_path / "ph"
    assert main(["phantom", str(out), "--cases", "2", "--size", "tiny", "--workers", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "segmentation-0.nii.gz",
                                                     "segmentation-1.nii.gz", "volume-0.nii.gz", "volume-1.nii.gz"]
    capsys.readouterr()
    assert main(["check", str(out), "--workers", "1"]) == 0
    assert capsys.readouterr().out.strip().endswith("2 cases, 0 errors, 2 warnings")
    assert main(["phantom", str(out), "--cases", "0"]) == 2
    assert capsys.readouterr().err.strip() == "medseg phantom: error: --cases must be at least 1, got 0"


def test_cli_check_errors_exit_2_with_csv(broken, tmp_path):
    csv = tmp_path / "problems.csv"
    run = subprocess.run([sys.executable, "-m", "medseg", "check", str(broken), "--workers", "1", "--csv", str(csv)],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "10 error(s) in 10 case(s)" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    errors = frame[frame.severity == "error"]
    assert sorted(errors.case_id) == sorted(c for c, _, s in EXPECTED if s == "error")
    assert "segmentation-2.nii.gz" in run.stdout and "label values 3 outside {0, 1, 2}" in run.stdout


def test_dicom_per_case_data_set_passes(tmp_path):
    """A phantom written as DICOM series with NIfTI labels: geometry agrees after the LPS/RAS round trip."""
    for index in (1, 2):  # LPS and LPI storage
        case = make_phantom(size="tiny", seed=0, index=index)
        folder = tmp_path / f"patient{index}"
        write_dicom_series(case.image, folder / "ct")
        write_volume(case.label, folder / "segmentation.nii.gz", label=True)
    report = check_dataset(tmp_path, workers=1, progress=False)
    assert report.layout == "dicom" and report.n_cases == 2
    assert report.ok, report.format_table()
    assert [p.check for p in report.problems] == ["spacing", "spacing"]


def _stored_as(volume: Volume, codes: str) -> Volume:
    import nibabel.orientations as nio

    transform = nio.ornt_transform(nio.io_orientation(volume.affine), nio.axcodes2ornt(tuple(codes)))
    return Volume(np.ascontiguousarray(nio.apply_orientation(volume.array, transform)),
                  volume.affine @ nio.inv_ornt_aff(transform, volume.shape))


def test_other_tools_label_maps(tmp_path, capsys):
    """Same grid in another voxel order passes; liver=5 maps need --labels; a label map as the image is refused."""
    from medseg.cli import main

    case = make_phantom(size="tiny", seed=0, index=3)
    root = tmp_path / "other"
    _write(root, "0", case.image, _stored_as(case.label, "LPI"))  # the scan is stored A,L,S
    other = np.where(case.label.array == 1, 5, np.where(case.label.array == 2, 6, 0)).astype(np.uint8)
    _write(root, "1", case.image, _stored_as(case.label.with_array(other), "RAS"))
    _write(root, "2", case.label, case.label)  # a segmentation where the scan should be
    limits = SpacingLimits(in_plane_mm=(0.1, 10), slice_mm=(0.1, 12))
    found = sorted((p.case_id, p.check) for p in check_dataset(root, workers=1, progress=False, limits=limits).errors)
    assert found == [("1", "label_values"), ("2", "kind")]
    mapped = check_dataset(root, workers=1, progress=False, limits=limits, labels=LabelMapping.parse(["liver=5",
                                                                                                     "tumor=6"]))
    # under liver=5 tumor=6, case 0's values 1 and 2 are other classes: background, so no liver (a warning)
    assert [(p.case_id, p.check) for p in mapped.errors] == [("2", "kind")]
    assert ("0", "no_liver") in [(p.case_id, p.check) for p in mapped.warnings]
    assert mapped.errors[0].message == "values 0, 1, 2 only: this is a label map (segmentation), not a CT scan"
    assert main(["check", str(root), "--workers", "1", "--labels", "liver=5", "tumor=6"]) == 2
    table = capsys.readouterr().out
    assert "label_values" not in table and "kind" in table
