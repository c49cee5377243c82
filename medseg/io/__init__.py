"""CT volume input/output that keeps geometry: NIfTI (nibabel) and DICOM (SimpleITK / pydicom)."""

from medseg.io.orientation import CANONICAL_AXCODES, Reorientation, axcodes, from_canonical, to_canonical
from medseg.io.reader import read_volume, write_volume
from medseg.io.volume import Volume, affine_from_geometry

__all__ = [
    "CANONICAL_AXCODES",
    "Reorientation",
    "Volume",
    "affine_from_geometry",
    "axcodes",
    "from_canonical",
    "read_volume",
    "to_canonical",
    "write_volume",
]
