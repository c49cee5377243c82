"""CT volume input/output that keeps geometry: NIfTI (nibabel) and DICOM (SimpleITK / pydicom)."""

from medseg.io.dicom import SeriesInfo, is_dicom_file, list_dicom_series, read_dicom_file, read_dicom_series
from medseg.io.dicom_writer import write_dicom_series
from medseg.io.label_map import LabelMapping
from medseg.io.orientation import (
    CANONICAL_AXCODES,
    Reorientation,
    align_to,
    axcodes,
    describe_geometry,
    from_canonical,
    place_on_grid,
    to_canonical,
)
from medseg.io.reader import read_label_map, read_volume, write_volume
from medseg.io.volume import Volume, affine_from_geometry

__all__ = [
    "CANONICAL_AXCODES",
    "LabelMapping",
    "Reorientation",
    "SeriesInfo",
    "Volume",
    "affine_from_geometry",
    "align_to",
    "axcodes",
    "describe_geometry",
    "from_canonical",
    "is_dicom_file",
    "list_dicom_series",
    "place_on_grid",
    "read_dicom_file",
    "read_dicom_series",
    "read_label_map",
    "read_volume",
    "to_canonical",
    "write_dicom_series",
    "write_volume",
]
