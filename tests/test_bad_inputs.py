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

from .inference.conftest import untrained_run  # noqa: F401


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


# --------------------------------------------------------------------------------------------------
# Inputs that are not what they claim (issue 11, point 4): every command that reads them refuses with one
# line naming the file, exit 2, no traceback, before heavy work; nothing under the input folder changes.
# Each builder writes under `root` and returns (command arguments, the bad file, the problem text); `OUT`
# in the arguments is replaced by an output folder outside `root`.


def _ct_and_label(root: Path):
    case = _phantom()
    return case, write_volume(case.image, root / "ct.nii.gz"), write_volume(case.label, root / "seg.nii.gz",
                                                                             label=True)


def label_map_as_ct(root):
    _, _, seg = _ct_and_label(root)
    return ["predict", str(seg), "--out", "OUT", "--model", "RUN"], seg, "this is a label map (segmentation), not a CT"


def binary_mask_as_ct(root):
    case = _phantom()
    mask = write_volume(case.label.with_array(np.where(case.label.array > 0, 255, 0)), root / "mask.nii.gz",
                        label=True)
    return ["predict", str(mask), "--out", "OUT", "--model", "RUN"], mask, "values 0, 255 only"


def dicom_seg_as_ct(root):
    from pydicom.sr.codedict import codes

    from tests.io.conftest import write_seg

    case = _phantom()
    series = write_dicom_series(case.image, root / "ct")
    seg = write_seg(series, [("Liver", codes.SCT.Liver, case.label.array > 0)], root / "seg.dcm")
    return ["predict", str(seg), "--out", "OUT", "--model", "RUN"], seg, "a DICOM SEG (segmentation), not a CT image"


def rtstruct_as_ct(root):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    root.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    from pydicom.dataset import FileDataset

    ds = FileDataset(str(root / "rtstruct.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.save_as(root / "rtstruct.dcm", enforce_file_format=True)
    path = root / "rtstruct.dcm"
    return ["predict", str(path), "--out", "OUT", "--model", "RUN"], path, "a DICOM RTSTRUCT (contours), not a CT"


def ct_as_label_map(root):
    _, ct, _ = _ct_and_label(root)
    return ["volumes", str(ct)], ct, "this looks like a CT scan, not a label map"


def one_file_of_a_series(root):
    case, _, seg = _ct_and_label(root)
    series = write_dicom_series(case.image, root / "series")
    one = sorted(series.iterdir())[4]
    return ["volumes", str(seg), "--image", str(one)], one, f"one slice of a {case.image.shape[2]}-file DICOM series"


def rgb_nifti(root):
    root.mkdir(parents=True, exist_ok=True)
    rgb = np.zeros((8, 8, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    path = root / "photo.nii.gz"
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), path)
    return ["volumes", str(path)], path, "colour/vector NIfTI"


def nifti_4d(root):
    root.mkdir(parents=True, exist_ok=True)
    path = root / "perfusion.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4, 5), np.int16), np.eye(4)), path)
    _, _, seg = _ct_and_label(root)
    return ["volumes", str(seg), "--image", str(path)], path, "got 4D with shape (8, 8, 4, 5) (a time series"


def gzip_crc_error(root):
    _, _, seg = _ct_and_label(root)
    raw = bytearray(seg.read_bytes())
    raw[-8] ^= 0xFF  # the CRC32 in the gzip trailer: every voxel decompresses, only the check fails
    seg.write_bytes(bytes(raw))
    return ["volumes", str(seg)], seg, "CRC check failed"


def zero_voxel_size(root):
    case, _, _ = _ct_and_label(root)
    img = nib.Nifti1Image(case.image.array, None)
    img.header["pixdim"][1:4] = (0.8, 0.0, 2.5)
    path = root / "zero.nii.gz"
    nib.save(img, path)
    return ["volumes", str(root / "seg.nii.gz"), "--image", str(path)], path, "voxel size (pixdim) 0.8 x 0 x 2.5 mm"


def negative_voxel_size(root):
    _ct_and_label(root)
    img = nib.Nifti1Image(np.zeros((8, 8, 4), np.uint8), None)
    img.header["pixdim"][1:4] = (0.8, -0.8, 2.5)
    path = root / "negative.nii.gz"
    nib.save(img, path)
    return ["volumes", str(path)], path, "voxel size (pixdim) 0.8 x -0.8 x 2.5 mm"


def dicom_zero_pixel_spacing(root):
    import pydicom

    case, _, seg = _ct_and_label(root)
    series = write_dicom_series(case.image, root / "series")
    for path in series.iterdir():
        ds = pydicom.dcmread(path)
        ds.PixelSpacing = [0, 0.8]
        ds.save_as(path)
    return ["volumes", str(seg), "--image", str(series)], series, "PixelSpacing [0.0, 0.8] mm"


def nan_scan_for_predict(root):
    case = _phantom()
    values = case.image.array.astype(np.float32)
    values[3, 4, 5] = np.inf
    path = write_volume(case.image.with_array(values), root / "nan.nii.gz")
    return ["predict", str(path), "--out", "OUT", "--model", "RUN"], path, "1 NaN/inf voxels in the scan"


def header_declares_64_gib(root):
    import gzip
    import io

    root.mkdir(parents=True, exist_ok=True)
    header = nib.Nifti1Header()
    header.set_data_shape((4096, 4096, 1024))
    header.set_data_dtype(np.int32)
    buffer = io.BytesIO()
    header.write_to(buffer)
    path = root / "huge.nii.gz"
    path.write_bytes(gzip.compress(buffer.getvalue() + b"\0" * 4, mtime=0))
    assert path.stat().st_size < 100
    return ["volumes", str(path)], path, "header declares 4096x4096x1024 int32 voxels (64.0 GiB)"


def nii_shorter_than_its_header(root):
    case = _phantom()
    root.mkdir(parents=True, exist_ok=True)
    path = root / "cut.nii"
    nib.save(nib.Nifti1Image(case.image.array, case.image.affine), path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 1000])  # an interrupted copy
    shape = "x".join(map(str, case.image.shape))
    return ["volumes", str(path)], path, f"header declares {shape} int16 voxels"


def dicom_pixels_shorter_than_declared(root):
    import pydicom

    case, _, seg = _ct_and_label(root)
    series = write_dicom_series(case.image, root / "series")
    path = sorted(series.iterdir())[2]
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = 65535, 65535  # 8 GiB declared, 4.6 KB of pixels stored
    ds.save_as(path)
    return ["volumes", str(seg), "--image", str(series)], path, "pixel data shorter than declared: 65535 rows"


def pipeline_not_utf8(root):
    root.mkdir(parents=True, exist_ok=True)
    path = root / "liver_latin1.yaml"
    path.write_bytes("name: liver\ndescription: f\xf6rdelning\n".encode("latin-1"))
    return ["train", str(path), "--data", str(root)], path, "not UTF-8 text"


def pipeline_nested_deeply(root):
    root.mkdir(parents=True, exist_ok=True)
    path = root / "deep.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    return ["train", str(path), "--data", str(root)], path, "nested"


def two_series_need_series_uid(root):
    case, _, seg = _ct_and_label(root)
    write_dicom_series(case.image, root / "patient" / "a", series_uid="1.2.3.1")
    write_dicom_series(case.image, root / "patient" / "b", series_uid="1.2.3.2")
    return ["volumes", str(seg), "--image", str(root / "patient")], root / "patient", "--series-uid UID"


CLAIMS = [
    label_map_as_ct, binary_mask_as_ct, dicom_seg_as_ct, rtstruct_as_ct, ct_as_label_map, one_file_of_a_series,
    rgb_nifti, nifti_4d, gzip_crc_error, zero_voxel_size, negative_voxel_size, dicom_zero_pixel_spacing,
    nan_scan_for_predict, header_declares_64_gib, nii_shorter_than_its_header, dicom_pixels_shorter_than_declared,
    pipeline_not_utf8, pipeline_nested_deeply, two_series_need_series_uid,
]


@pytest.mark.parametrize("build", CLAIMS, ids=lambda f: f.__name__)
def test_not_what_it_claims(tmp_path, capsys, build, untrained_run):  # noqa: F811
    root = tmp_path / "data"
    argv, bad, problem = build(root)
    argv = [str(tmp_path / "out") if a == "OUT" else str(untrained_run) if a == "RUN" else a for a in argv]
    before = _hashes(root)
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    if argv[0] == "predict":  # a cohort command: one FAILED line per scan in its summary
        lines = [line for line in captured.err.splitlines() if line.strip().startswith("FAILED")]
    else:
        lines = [_one_line(captured.err)]
        assert lines[0].startswith(f"medseg {argv[0]}: error: ")
    assert len(lines) == 1 and str(bad) in lines[0] and problem in lines[0], captured.err
    assert "np.float64" not in lines[0]
    assert _hashes(root) == before


def test_64_gib_header_is_refused_without_allocating(tmp_path):
    import tracemalloc

    _, bad, problem = header_declares_64_gib(tmp_path / "data")
    tracemalloc.start()
    with pytest.raises(DataError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        read_volume(bad)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 16 << 20  # far below the 64 GiB it declares


def test_series_without_uid_can_be_chosen(tmp_path, capsys):
    import pydicom

    case = _phantom()
    first = write_dicom_series(case.image, tmp_path / "patient" / "a", series_uid="1.2.3.1")
    second = write_dicom_series(case.image.with_array(case.image.array // 2), tmp_path / "patient" / "b")
    for path in second.iterdir():
        ds = pydicom.dcmread(path)
        del ds.SeriesInstanceUID
        ds.save_as(path)
    with pytest.raises(DataError, match="<no uid>"):
        read_volume(tmp_path / "patient")
    np.testing.assert_array_equal(read_volume(tmp_path / "patient", series_uid="<no uid>").array,
                                  case.image.array // 2)
    np.testing.assert_array_equal(read_volume(tmp_path / "patient", series_uid="1.2.3.1").array, case.image.array)
    seg = write_volume(case.label, tmp_path / "seg.nii.gz", label=True)
    assert main(["volumes", str(seg), "--image", str(tmp_path / "patient"), "--series-uid", "<no uid>"]) == 0
    assert first.is_dir()


@pytest.mark.parametrize("command", ["predict", "volumes", "check"])
def test_series_uid_exists_where_errors_mention_it(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--series-uid UID" in capsys.readouterr().out


def test_claim_in_a_real_process(tmp_path):
    """The same through ``python -m medseg``: exit 2, one line on stderr, no traceback, input unchanged."""
    root = tmp_path / "data"
    argv, bad, problem = header_declares_64_gib(root)
    before = _hashes(root)
    run = subprocess.run([sys.executable, "-m", "medseg", *argv], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr + run.stdout
    line = _one_line(run.stderr)
    assert line.startswith(f"medseg volumes: error: {bad}: ") and problem in line
    assert _hashes(root) == before
