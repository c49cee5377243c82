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


def _nifti_with_extension(path, esize, *, content_bytes=None, vox_offset=None):
    """A 2x2x2 int16 ``.nii.gz`` (values 0..7) whose header carries one extension of ``esize`` bytes (code 6,
    a comment): written as gzip members (zeros compressed once, repeated), like a gzip of the whole would read.
    ``content_bytes`` (default ``esize - 8``) zero bytes actually follow the extension head."""
    import gzip
    import io

    content_bytes = esize - 8 if content_bytes is None else content_bytes
    header = nib.Nifti1Header()
    header.set_data_shape((2, 2, 2))
    header.set_data_dtype(np.int16)
    header["vox_offset"] = 352 + (esize if vox_offset is None else vox_offset - 352)
    head = io.BytesIO()
    header.write_to(head)
    members = [gzip.compress(head.getvalue()[:348] + b"\1\0\0\0" + np.array([esize, 6], "<i4").tobytes(), mtime=0)]
    zeros = gzip.compress(b"\0" * (1 << 20), mtime=0)
    members += [zeros] * (content_bytes >> 20) + [gzip.compress(b"\0" * (content_bytes % (1 << 20)), mtime=0)]
    members.append(gzip.compress(np.arange(8, dtype="<i2").tobytes(), mtime=0))
    path.write_bytes(b"".join(members))
    return path


_READ_HOSTILE = """
import resource, sys
from medseg.errors import DataError
from medseg.io import read_volume
vm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (256 << 20), vm + (256 << 20)))
try:
    read_volume(sys.argv[1])
except DataError as exc:
    print(exc)
"""


def test_header_extensions_are_inside_the_size_guard(tmp_path):
    """Issue #29.12: a 0.5 MB ``.nii.gz`` whose header carries a 512 MiB extension passed the declared-size
    guard (within deflate's 1032:1) and nibabel held it in memory (1.2 GB peak); it is refused from the first
    bytes of the stream, within 256 MiB of address space beyond the interpreter's."""
    import subprocess
    import sys

    hostile = _nifti_with_extension(tmp_path / "ext.nii.gz", 512 << 20)
    assert hostile.stat().st_size < 600_000
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _READ_HOSTILE, str(hostile)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-1500:]
    assert "ext.nii.gz: header extensions of 512.0 MiB or more (code 6 at byte 352): more than the 64.0 MiB" \
        in done.stdout


def test_header_extensions_that_run_past_the_voxels_are_refused(tmp_path):
    small = read_volume(_nifti_with_extension(tmp_path / "ok.nii.gz", 1024))  # a 1 kB comment: read as usual
    np.testing.assert_array_equal(small.array, np.arange(8).reshape(2, 2, 2, order="F"))
    past = _nifti_with_extension(tmp_path / "past.nii.gz", 4096, vox_offset=352 + 1024)  # esize beyond vox_offset
    with pytest.raises(DataError, match=r"past\.nii\.gz: header extension \(code 6\) at byte 352 declares 4096 "
                                        r"bytes, but 1024 bytes lie between it and the voxels \(vox_offset 1376\)"):
        read_volume(past)
    negative = _nifti_with_extension(tmp_path / "neg.nii.gz", -8, content_bytes=1024, vox_offset=352 + 1024)
    with pytest.raises(DataError, match=r"neg\.nii\.gz: header extension \(code 6\) at byte 352 declares -8 bytes"):
        read_volume(negative)  # nibabel would read(-16): the whole rest of the file
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(_nifti_with_extension(tmp_path / "whole.nii.gz", 4 << 20).read_bytes()[:3000])
    with pytest.raises(DataError, match=r"cut\.nii\.gz: "):
        read_volume(cut)


@pytest.mark.parametrize("shape", [(3, 4, 5), (130, 17, 6), (257, 9, 2)])  # tiles of 128 x 8 with remainders
def test_label_map_file_same_bytes_for_any_memory_order(tmp_path, shape):
    """A C-ordered label map is written through a tiled Fortran copy: the same file bytes as nibabel writing a
    Fortran-ordered copy of it (np.asfortranarray), and the same voxels read back."""
    from medseg.io.nifti import _fortran_order
    from medseg.io.volume import Volume

    labels = np.random.default_rng(0).integers(0, 3, size=shape, dtype=np.uint8)
    assert np.array_equal(_fortran_order(labels), labels) and _fortran_order(labels).flags.f_contiguous
    affine = np.diag([0.8, 0.9, 2.0, 1.0])
    written = []
    for array in (labels, np.asfortranarray(labels)):
        path = tmp_path / f"{len(written)}.nii"
        write_volume(Volume(array=array, affine=affine), path, label=True)
        written.append(path.read_bytes())
    assert written[0] == written[1]
    assert np.array_equal(read_volume(tmp_path / "0.nii").array, labels)
