"""NIfTI round trips (Volume geometry: test_volume.py)."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest

from medseg.errors import DataError
from medseg.io import read_volume, write_volume


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_round_trip_keeps_values_and_affine(tmp_path, tiny_case, suffix):
    path = write_volume(tiny_case.image, tmp_path / f"scan{suffix}")
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, tiny_case.image.array)
    assert back.array.dtype == np.int16
    np.testing.assert_allclose(back.affine, tiny_case.image.affine, atol=1e-5)


def test_label_written_as_uint8_with_scan_affine(tmp_path, tiny_case):
    labels = tiny_case.label.with_array(tiny_case.label.array.astype(np.float32))
    path = write_volume(labels, tmp_path / "seg.nii.gz", label=True)
    img = nib.load(path)
    assert img.get_data_dtype() == np.uint8
    np.testing.assert_allclose(img.affine, tiny_case.image.affine, atol=1e-5)
    assert int(img.header["qform_code"]) > 0 and int(img.header["sform_code"]) > 0


def test_label_write_rejects_fractional_values(tmp_path, tiny_case):
    bad = tiny_case.label.with_array(tiny_case.label.array + 0.5)
    with pytest.raises(DataError, match="non-integer"):
        write_volume(bad, tmp_path / "seg.nii.gz", label=True)
    assert not any(tmp_path.iterdir()), "a failed write must leave no file behind"


def test_existing_qform_restored_when_writing_label(tmp_path):
    """A scan whose qform differs from its sform: the label map keeps both, as the scan has them."""
    sform = np.diag([-0.75, -0.75, 2.0, 1.0])
    qform = np.diag([-0.75, -0.75, 2.0, 1.0])
    qform[:3, 3] = (1.0, 2.0, 3.0)
    img = nib.Nifti1Image(np.zeros((4, 4, 3), np.int16), sform)
    img.set_qform(qform, code=1)
    img.set_sform(sform, code=2)
    nib.save(img, tmp_path / "scan.nii")
    scan = read_volume(tmp_path / "scan.nii")
    write_volume(scan.with_array(np.ones(scan.shape, np.uint8)), tmp_path / "seg.nii", label=True)
    out = nib.load(tmp_path / "seg.nii")
    np.testing.assert_allclose(out.get_qform(), qform, atol=1e-5)
    np.testing.assert_allclose(out.get_sform(), sform, atol=1e-5)
    assert int(out.header["sform_code"]) == 2


def test_real_nibabel_test_files_read():
    """nibabel ships test images no one here wrote; their affine and shape must come through."""
    import nibabel.testing

    data = os.path.join(os.path.dirname(nibabel.testing.__file__), "..", "tests", "data")
    path = os.path.join(data, "anatomical.nii")
    vol = read_volume(path)
    ref = nib.load(path)
    assert vol.shape == ref.shape[:3]
    np.testing.assert_allclose(vol.affine, ref.affine)
    np.testing.assert_array_equal(vol.array, np.asanyarray(ref.dataobj).reshape(vol.shape))


def test_4d_multi_volume_rejected(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2), np.int16), np.eye(4)), tmp_path / "fmri.nii.gz")
    with pytest.raises(DataError, match=r"fmri\.nii\.gz.*3D"):
        read_volume(tmp_path / "fmri.nii.gz")
