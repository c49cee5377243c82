"""Coded concepts (SNOMED CT, DICOM) for liver and liver-tumor segments, shared by the SEG writer and reader.

Codes as DICOM PS3.16 uses them for segmentation (CID 7150 "Segmentation Property Categories", CID 7151/7153
property types, CID 7162 algorithm families):

==================  ===============================================  ==========================================
segment             category                                         type (anatomic region)
==================  ===============================================  ==========================================
Liver               SCT 123037004 Anatomical Structure               SCT 10200004 Liver
Liver tumor         SCT 49755003 Morphologically Altered Structure   SCT 108369006 Neoplasm (SCT 10200004 Liver)
==================  ===============================================  ==========================================

medseg's own SEG files follow LiTS: the "Liver" segment holds labels 1 and 2 (the tumor is part of the
liver) and "Liver tumor" label 2, so segments overlap and the label map is their sum (liver + tumor).
"""

from __future__ import annotations

from pydicom.sr.coding import Code

__all__ = [
    "ANATOMICAL_STRUCTURE",
    "ARTIFICIAL_INTELLIGENCE",
    "LIVER",
    "LIVER_SEGMENT_LABEL",
    "MORPHOLOGICALLY_ALTERED_STRUCTURE",
    "NEOPLASM",
    "TUMOR_SEGMENT_LABEL",
]

#: Segmented property category of the liver segment.
ANATOMICAL_STRUCTURE = Code("123037004", "SCT", "Anatomical Structure")
#: Segmented property category of the tumor segment.
MORPHOLOGICALLY_ALTERED_STRUCTURE = Code("49755003", "SCT", "Morphologically Altered Structure")
#: Property type of the liver segment, and anatomic region of the tumor segment.
LIVER = Code("10200004", "SCT", "Liver")
#: Property type of the tumor segment.
NEOPLASM = Code("108369006", "SCT", "Neoplasm")
#: Algorithm family (CID 7162) of every medseg segment.
ARTIFICIAL_INTELLIGENCE = Code("123110", "DCM", "Artificial Intelligence")

#: Segment labels written by medseg.
LIVER_SEGMENT_LABEL = "Liver"
TUMOR_SEGMENT_LABEL = "Liver tumor"
