"""Case ids from file names, shared by discovery, prediction output and evaluation matching.

A case id is the part of a file or folder name that identifies the case:

==============================  =========
name                            case id
==============================  =========
``volume-12.nii``               ``12``
``segmentation-12.nii.gz``      ``12``
``test-volume-3.nii``           ``3``
``liver_7.nii.gz`` (Decathlon)  ``liver_7``
``liver_7_0000.nii.gz``         ``liver_7``
``12_seg.nii.gz`` (prediction)  ``12``
``patient01/`` (DICOM folder)   ``patient01``
==============================  =========
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["case_id_from_path", "is_output_name", "prediction_filename"]

_EXTENSIONS = (".nii.gz", ".nii", ".dcm")
_PREFIXES = re.compile(r"^(test-)?(volume|segmentation)-", re.IGNORECASE)
_SUFFIXES = re.compile(r"(_seg|_0000)$", re.IGNORECASE)
#: What ``medseg predict`` writes per case: label map, DICOM SEG, probability and uncertainty maps.
_OUTPUTS = re.compile(r"^.+_(seg\.nii(\.gz)?|seg\.dcm|prob_[a-z]+\.nii(\.gz)?|uncertainty\.nii(\.gz)?)$", re.IGNORECASE)


def case_id_from_path(path: str | os.PathLike) -> str:
    """The case id of an image, label, prediction file or DICOM series folder (see module table)."""
    name = Path(path).name
    for ext in _EXTENSIONS:
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    name = _PREFIXES.sub("", name)
    return _SUFFIXES.sub("", name)


def prediction_filename(case_id: str) -> str:
    """File name of the label map that ``medseg predict`` writes for ``case_id``."""
    return f"{case_id}_seg.nii.gz"


def is_output_name(name: str) -> bool:
    """Whether ``name`` is a file ``medseg predict`` writes per case (``<case>_seg.nii.gz``, ``<case>_seg.dcm``,
    ``<case>_prob_liver.nii.gz``, ``<case>_uncertainty.nii.gz``...): never a CT scan to predict."""
    return bool(_OUTPUTS.match(name))
