"""`medseg predict` end to end: NIfTI and DICOM inputs, bad inputs in a batch, resuming, sharding."""

from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np
import pytest

from medseg.cli import main
from medseg.data import make_phantom, write_phantom_case
from medseg.inference.batch import collect_inputs
from medseg.io import read_volume


def _dice(a, b):
    return 2 * np.sum(a & b) / max(1, np.sum(a) + np.sum(b))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Two NIfTI scans (LPS and LPI storage) and one DICOM series folder (ALS case)."""
    from medseg.io.dicom_writer import write_dicom_series

    root = tmp_path_factory.mktemp("cohort")
    cases = {i: make_phantom(size="tiny", seed=3, index=i) for i in (1, 2, 3)}
    for i in (1, 2):
        write_phantom_case(cases[i], root / "nifti")
    write_dicom_series(cases[3].image, root / "dicom" / "patient3")
    return root, cases


def test_predict_nifti_and_dicom(trained_run, cohort, tmp_path, capsys):
    root, cases = cohort
    out = tmp_path / "pred"
    code = main(["predict", "--model", str(trained_run), str(root / "nifti"), str(root / "dicom" / "patient3"),
                 "--out", str(out), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    for case_id, index, source in (("1", 1, root / "nifti" / "volume-1.nii.gz"),
                                   ("2", 2, root / "nifti" / "volume-2.nii.gz"),
                                   ("patient3", 3, root / "dicom" / "patient3")):
        scan = read_volume(source)
        pred = read_volume(out / f"{case_id}_seg.nii.gz")
        assert pred.array.dtype == np.uint8
        assert pred.shape == scan.shape and np.allclose(pred.affine, scan.affine, atol=1e-4)
        assert _dice(pred.array > 0, cases[index].label.array > 0) > 0.6
        report = json.loads((out / f"{case_id}_volumes.json").read_text())
        expected_ml = np.count_nonzero(pred.array) * scan.voxel_volume_ml
        assert report["liver_ml"] == pytest.approx(expected_ml, rel=1e-6)
    # the NIfTI header of the prediction carries the scan's orientation (overlays in any viewer)
    ref = nib.load(root / "nifti" / "volume-2.nii.gz")
    pred = nib.load(out / "2_seg.nii.gz")
    assert nib.aff2axcodes(pred.affine) == nib.aff2axcodes(ref.affine) == ("L", "P", "I")
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_bad_inputs_do_not_stop_the_batch(untrained_run, cohort, tmp_path, capsys):
    root, _ = cohort
    bad = tmp_path / "bad"
    bad.mkdir()
    good = root / "nifti" / "volume-1.nii.gz"
    (bad / "truncated.nii.gz").write_bytes(gzip.compress(good.read_bytes())[:2000])
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.int16), np.eye(4)), bad / "flat.nii.gz")
    (bad / "notes.txt").write_text("not an image")
    out = tmp_path / "pred"
    out.mkdir()
    (out / "truncated_seg.nii.gz").write_bytes(b"previous result")  # must survive the failed re-run
    code = main(["predict", "--model", str(untrained_run), str(bad / "truncated.nii.gz"), str(good),
                 str(bad / "flat.nii.gz"), str(bad / "missing.nii.gz"), str(bad / "notes.txt"),
                 "--out", str(out), "--device", "cpu", "--no-volumes", "--no-preview"])
    err = capsys.readouterr().err
    assert code == 2
    assert "1 predicted, 0 skipped (output exists), 4 failed" in err
    for name in ("truncated.nii.gz", "flat.nii.gz", "missing.nii.gz", "notes.txt"):
        assert sum("FAILED" in line and name in line for line in err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert (out / "1_seg.nii.gz").is_file()
    assert (out / "truncated_seg.nii.gz").read_bytes() == b"previous result"
    assert sorted(p.name for p in out.iterdir()) == ["1_seg.nii.gz", "run.json", "truncated_seg.nii.gz"]


def test_skip_existing_resumes(untrained_run, cohort, tmp_path, capsys):
    root, _ = cohort
    out = tmp_path / "pred"
    out.mkdir()
    (out / "1_seg.nii.gz").write_bytes(b"done earlier")
    code = main(["predict", "--model", str(untrained_run), str(root / "nifti"), "--out", str(out),
                 "--device", "cpu", "--skip-existing", "--no-volumes"])
    assert code == 0
    assert "1 predicted, 1 skipped" in capsys.readouterr().err
    assert (out / "1_seg.nii.gz").read_bytes() == b"done earlier"
    assert read_volume(out / "2_seg.nii.gz").shape == read_volume(root / "nifti" / "volume-2.nii.gz").shape


def test_torchrun_sharding(untrained_run, cohort, tmp_path, monkeypatch, capsys):
    root, _ = cohort
    inputs, failures = collect_inputs([root / "nifti", root / "dicom"])
    assert [cid for cid, _ in inputs] == ["1", "2", "patient3"] and not failures
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "pred"
    code = main(["predict", "--model", str(untrained_run), str(root / "nifti"), str(root / "dicom"),
                 "--out", str(out), "--device", "cpu", "--no-volumes", "--no-preview"])
    assert code == 0
    assert "(part 1/2, torchrun)" in capsys.readouterr().err
    # every second scan, from the second; this process's own manifest; its part recorded (rank 0 has not ended)
    assert sorted(p.name for p in out.iterdir()) == ["2_seg.nii.gz", "parts.json", "run.rank1.json"]


def test_bad_model_is_one_line(tmp_path, capsys):
    (tmp_path / "scan.nii.gz").write_bytes(b"")
    code = main(["predict", "--model", str(tmp_path / "nope"), str(tmp_path / "scan.nii.gz"), "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "nope" in err


def test_no_postprocessing_gives_the_raw_argmax(untrained_run, cohort, tmp_path, capsys):
    # the default output is the run's post-processing applied to the --no-postprocessing output
    from medseg.inference.postprocess import postprocess_labels
    from medseg.inference.predictor import Predictor

    root, _ = cohort
    scan = root / "nifti" / "volume-1.nii.gz"
    for name, extra in (("raw", ["--no-postprocessing"]), ("post", [])):
        code = main(["predict", "--model", str(untrained_run), str(scan), "--out", str(tmp_path / name),
                     "--device", "cpu", "--no-preview", "--no-volumes", "--mode", "full", *extra])
        assert code == 0, capsys.readouterr().err
    raw, post = (read_volume(tmp_path / name / "1_seg.nii.gz") for name in ("raw", "post"))
    config = Predictor.from_run(untrained_run, device="cpu").postprocessing
    assert config.keep_largest_liver  # the run post-processes, so the two outputs differ
    np.testing.assert_array_equal(post.array, postprocess_labels(raw.array, spacing_mm=raw.spacing_mm, config=config))
    assert not np.array_equal(raw.array, post.array)


def test_crf_refines_the_probabilities_before_the_post_processing(trained_run, cohort, tmp_path, capsys):
    """``--crf`` = the dense CRF on the scan-grid probabilities inside the liver's box, then the run's steps
    (checked against the library calls on the same probabilities); run.json records it."""
    from medseg.inference.crf import CrfSettings, refine_labels
    from medseg.inference.postprocess import postprocess_labels
    from medseg.inference.predictor import Predictor
    from medseg.io import read_volume as read

    root, _ = cohort
    scan = root / "nifti" / "volume-1.nii.gz"
    out = tmp_path / "crf"
    assert main(["predict", "--model", str(trained_run), str(scan), "--out", str(out), "--device", "cpu",
                 "--no-preview", "--no-volumes", "--mode", "full", "--runtime", "torch", "--crf"]) == 0, \
        capsys.readouterr().err  # fmt: skip
    predictor = Predictor.from_run(trained_run, device="cpu").with_settings(mode="full", runtime="torch")
    volume = read(scan)
    probabilities = predictor.predict_probabilities(volume).array
    refined = refine_labels(probabilities.argmax(0).astype(np.uint8), probabilities, volume.array,
                            spacing_mm=volume.spacing_mm, settings=CrfSettings())  # fmt: skip
    expected = postprocess_labels(refined, spacing_mm=volume.spacing_mm, config=predictor.postprocessing,
                                  affine=volume.affine)  # fmt: skip
    np.testing.assert_array_equal(read(out / "1_seg.nii.gz").array, expected)
    run = json.loads((out / "run.json").read_text())
    assert run["pipeline"]["postprocessing"]["crf"] == CrfSettings().to_dict() | {"hu_range": [-200.0, 400.0]}
