"""CaseSpec: every way of naming a case's inputs, the shared-grid check, input signatures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from medseg.errors import DataError
from medseg.io.volume import Volume
from medseg.preprocessing.cases import CaseSpec, as_case_spec, input_signature, load_case_volumes

AFFINE = np.diag([0.8, 0.8, 2.0, 1.0])


def _volume(shape=(4, 5, 6), affine=AFFINE, fill=0):
    return Volume(np.full(shape, fill, np.int16), affine.copy())


@dataclass
class _DiscoveryCase:  # the attributes of medseg.data.discovery.Case
    case_id: str
    image_path: Path
    label_path: Path | None


def test_every_case_form_becomes_a_spec(tmp_path):
    image, label = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    spec = as_case_spec(("7", str(image), None))
    assert spec == CaseSpec("7", image, None) and isinstance(spec.image, Path)
    assert as_case_spec(spec) is spec
    assert as_case_spec(_DiscoveryCase("3", image, label)) == CaseSpec("3", image, label)
    vol = _volume()

    from types import SimpleNamespace

    phantom_case = SimpleNamespace(info={"case_id": 12}, image=vol, label=None)  # as medseg.data.PhantomCase
    phantom = as_case_spec(phantom_case)
    assert phantom.case_id == "12" and phantom.image is vol and phantom.label is None


def test_bad_case_forms():
    with pytest.raises(DataError, match=r"\(case_id, image, label\), got 2 items"):
        as_case_spec(("1", "a.nii.gz"))
    with pytest.raises(DataError, match="case '4' has no image"):
        as_case_spec(_DiscoveryCase("4", None, None))
    with pytest.raises(TypeError, match="cannot interpret int"):
        as_case_spec(5)


def test_load_checks_the_shared_grid():
    image = _volume()
    assert load_case_volumes(CaseSpec("1", image, None)) == (image, None)
    label = _volume(fill=1)
    got_image, got_label = load_case_volumes(CaseSpec("1", image, label))
    assert got_image is image and got_label is label
    with pytest.raises(DataError, match=r"label shape \(4, 5, 7\) differs from image shape \(4, 5, 6\) \(case 1\)"):
        load_case_volumes(CaseSpec("1", image, _volume(shape=(4, 5, 7))))
    shifted = AFFINE.copy()
    shifted[0, 3] = 0.5  # half a voxel off: beyond the 0.01 mm tolerance
    with pytest.raises(DataError, match=r"label affine differs from the image affine \(case 1\)"):
        load_case_volumes(CaseSpec("1", image, _volume(affine=shifted)))
    shifted[0, 3] = 0.005  # within tolerance
    load_case_volumes(CaseSpec("1", image, _volume(affine=shifted)))


def test_input_signature_changes_with_the_input(tmp_path):
    assert input_signature(None) == "none"
    a, b = _volume(fill=1), _volume(fill=2)
    assert input_signature(a) == input_signature(_volume(fill=1)) != input_signature(b)
    assert input_signature(a).startswith("volume:")
    path = tmp_path / "scan.nii.gz"
    path.write_bytes(b"12345")
    first = input_signature(path)
    assert first.startswith(f"file:{path.resolve()}:5:")
    path.write_bytes(b"123456")
    assert input_signature(path) != first
    folder = tmp_path / "dicom"
    folder.mkdir()
    (folder / "1.dcm").write_bytes(b"x")
    assert input_signature(folder).startswith(f"dir:{folder.resolve()}:1:")
    with pytest.raises(DataError, match="missing: no such file or folder"):
        input_signature(tmp_path / "missing")


def test_label_in_another_voxel_order_is_reoriented_onto_the_image(tiny_case):
    import nibabel.orientations as nio

    label = tiny_case.label
    transform = nio.ornt_transform(nio.io_orientation(label.affine), nio.axcodes2ornt(("L", "P", "I")))
    stored = Volume(nio.apply_orientation(label.array, transform), label.affine @ nio.inv_ornt_aff(transform,
                                                                                                   label.shape))
    image, aligned = load_case_volumes(CaseSpec("3", tiny_case.image, stored))
    np.testing.assert_array_equal(aligned.array, label.array)
    np.testing.assert_allclose(aligned.affine, image.affine)
