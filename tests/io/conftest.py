"""IO fixtures: a phantom CT written as a DICOM series, and DICOM SEG files of its label map (highdicom)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest


def write_seg(series: Path, segments: list[tuple[str, object, np.ndarray]], path: Path, *,
              fractional: bool = False) -> Path:
    """Write a DICOM SEG of ``series`` with highdicom (independent of medseg's writer).

    Args:
        series: Folder of the source CT series (as written by :func:`medseg.io.write_dicom_series`).
        segments: ``(label, property type code, mask)`` with ``mask`` ``(X, Y, Z)`` in medseg's voxel order
            (column, row, slice = InstanceNumber - 1).
        path: Output file.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    sources = sorted((pydicom.dcmread(p) for p in series.iterdir()), key=lambda d: int(d.InstanceNumber))
    for ds in sources:  # attributes highdicom copies from the source that our minimal CT writer leaves out
        for key in ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName",
                    "AccessionNumber", "StudyID"):
            if key not in ds:
                setattr(ds, key, "")
    stack = np.stack([mask.transpose(2, 1, 0) for _, _, mask in segments], axis=-1)  # (frames, rows, cols, S)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i + 1, segment_label=label, segmented_property_category=codes.SCT.Organ,
            segmented_property_type=code, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for i, (label, code, _) in enumerate(segments)]
    kind = hd.seg.SegmentationTypeValues.FRACTIONAL if fractional else hd.seg.SegmentationTypeValues.BINARY
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=stack.astype(np.float32 if fractional else np.uint8),
            segmentation_type=kind, segment_descriptions=descriptions, series_instance_uid=hd.UID(),
            series_number=99, sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test",
            manufacturer_model_name="test", software_versions="1", device_serial_number="1")
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory):
    """``(case, series folder, SEG path)``: a tiny phantom as a CT series and a LiTS-style SEG of its labels.

    The SEG has a "Liver" segment (SNOMED Liver, labels 1 and 2), a "Liver tumor" segment (SNOMED Neoplasm,
    label 2) and a "Spleen" segment that must be ignored; highdicom omits the empty frames.
    """
    from pydicom.sr.codedict import codes

    from medseg.data import make_phantom
    from medseg.io import write_dicom_series

    root = tmp_path_factory.mktemp("dicom_case")
    case = make_phantom(size="tiny", seed=0, index=3)
    series = write_dicom_series(case.image, root / "ct")
    label = case.label.array
    spleen = np.zeros_like(label)
    spleen[2:6, 2:6, 10:14] = 1
    seg = write_seg(series, [("Liver", codes.SCT.Liver, label > 0), ("Liver tumor", codes.SCT.Neoplasm, label == 2),
                             ("Spleen", codes.SCT.Spleen, spleen > 0)], root / "seg" / "3.dcm")
    return case, series, seg
