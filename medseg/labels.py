"""The LiTS label map and its regions: the one home of "1 is liver, 2 is tumor".

LiTS (Bilic et al., Medical Image Analysis 2023) labels every CT voxel 0 (background), 1 (liver
parenchyma) or 2 (tumor). The regions evaluated and reported are nested: *liver* is every voxel labelled
liver or tumor (the tumor is part of the liver), *parenchyma* is label 1, *tumor* is label 2. Tumor burden
is the tumor's share of the liver, in percent.

Partial annotations (issue #30) mark voxels nobody annotated with a declared *ignore* value (above 2); a
prediction is always dense and is scored on the annotated voxels only (:func:`without_unannotated`).

Label names travel as ``{class index (str): name}`` mappings (JSON keys are strings), as in a checkpoint's
``inference.labels`` and a pipeline's ``data.labels``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "BACKGROUND",
    "LITS_LABELS",
    "LIVER",
    "REGION_LABELS",
    "TUMOR",
    "is_lits",
    "lits_labels",
    "liver_mask",
    "region_masks",
    "tumor_burden_percent",
    "tumor_mask",
    "without_unannotated",
]

BACKGROUND, LIVER, TUMOR = 0, 1, 2

#: Class index (str) -> name of the LiTS label map, read-only (use :func:`lits_labels` for a copy).
LITS_LABELS: Mapping[str, str] = MappingProxyType({"0": "background", "1": "liver", "2": "tumor"})

#: Label values making up each evaluated region.
REGION_LABELS: Mapping[str, tuple[int, ...]] = MappingProxyType({"liver": (LIVER, TUMOR), "tumor": (TUMOR,)})


def lits_labels() -> dict[str, str]:
    """A new ``{"0": "background", "1": "liver", "2": "tumor"}`` dict (e.g. a config field's default)."""
    return dict(LITS_LABELS)


def is_lits(labels: Mapping[Any, str]) -> bool:
    """Whether label names (class index -> name) are LiTS': 1 liver and 2 tumor (other classes may follow).

    Post-processing and the liver/tumor regions assume these two; keys may be ints or strings.
    """
    names = {str(k): str(v) for k, v in labels.items()}
    return names.get(str(LIVER)) == "liver" and names.get(str(TUMOR)) == "tumor"


def liver_mask(labels: np.ndarray) -> np.ndarray:
    """Boolean liver mask (parenchyma and tumor: ``label in {1, 2}``) of a LiTS label map, any shape."""
    labels = np.asarray(labels)
    return (labels == LIVER) | (labels == TUMOR)


def tumor_mask(labels: np.ndarray) -> np.ndarray:
    """Boolean tumor mask (``label == 2``) of a LiTS label map, any shape."""
    return np.asarray(labels) == TUMOR


def region_masks(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks ``{"liver", "parenchyma", "tumor"}`` of a LiTS label map (see the module docstring)."""
    labels = np.asarray(labels)
    tumor = labels == TUMOR
    parenchyma = labels == LIVER
    return {"liver": parenchyma | tumor, "parenchyma": parenchyma, "tumor": tumor}


def tumor_burden_percent(liver: float, tumor: float) -> float:
    """Tumor burden ``100 * tumor / liver`` in percent of the liver (tumor included).

    Args:
        liver: Liver amount (voxels or mL), tumor included.
        tumor: Tumor amount, in the same unit.

    Returns:
        The burden; 0 when both are empty, NaN for tumor without liver (undefined, and a sign of a bad map).
    """
    if liver > 0:
        return 100.0 * tumor / liver
    return 0.0 if tumor == 0 else math.nan


def without_unannotated(pred: np.ndarray, ref: np.ndarray, ignore_label: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(pred, ref)`` with the reference's unannotated voxels (``ref == ignore_label``) set to background in
    both, so every metric counts the annotated voxels only: a prediction is neither rewarded nor penalised
    where nobody annotated. Overlap counts are exactly those of the annotated voxels; surfaces and lesions
    are those of the masked maps. ``ignore_label=None``: both unchanged.

    Args:
        pred: Dense predicted label map, any shape.
        ref: Reference label map of the same shape, possibly holding ``ignore_label``.
    """
    if ignore_label is None:
        return pred, ref
    pred, ref = np.asarray(pred), np.asarray(ref)
    unannotated = ref == ignore_label
    if not unannotated.any():
        return pred, ref
    return np.where(unannotated, 0, pred).astype(pred.dtype), np.where(unannotated, 0, ref).astype(ref.dtype)
