"""NIfTI files no one here wrote: nibabel's own test data, read and round-tripped through medseg.io."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.errors import DataError
from medseg.io import read_volume, write_volume

DATA = Path(nib.__file__).parent / "tests" / "data"
THREE_D = ["anatomical.nii", "standard.nii.gz", "reoriented_anat_moved.nii", "resampled_anat_moved.nii"]


@pytest.mark.parametrize("name", THREE_D)
def test_nibabel_files_read_and_round_trip(tmp_path, name):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"nibabel test file {name} not shipped")
    img = nib.load(path)
    vol = read_volume(path)
    np.testing.assert_allclose(vol.affine, img.affine)
    np.testing.assert_array_equal(np.asarray(vol.array, dtype=float), np.squeeze(img.get_fdata()))
    assert vol.spacing_mm == pytest.approx(tuple(np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))))
    back = read_volume(write_volume(vol, tmp_path / "copy.nii.gz"))
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)


@pytest.mark.parametrize("name", ["example4d.nii.gz", "example_nifti2.nii.gz"])  # NIfTI-1 and NIfTI-2, 4D
def test_nibabel_4d_series_is_rejected(name):
    path = DATA / name
    shape = nib.load(path).shape
    with pytest.raises(DataError, match=rf"expected a 3D image, got 4D with shape \({shape[0]}, {shape[1]}") as info:
        read_volume(path)
    assert str(path) in str(info.value)
