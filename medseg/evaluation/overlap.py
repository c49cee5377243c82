"""Volume-overlap metrics of two binary masks: Dice, Jaccard, VOE and RVD (LiTS definitions).

With ``A`` the prediction and ``B`` the reference (voxel sets):

* Dice ``= 2|A ∩ B| / (|A| + |B|)`` (Dice, 1945), Jaccard ``= |A ∩ B| / |A ∪ B|``, VOE ``= 1 - Jaccard``;
* RVD ``= (|A| - |B|) / |B|``, the sign of the LiTS paper (Bilic et al., Medical Image Analysis 2023):
  positive when the prediction is too large. The official LiTS 2017 scorer called ``medpy.ravd(B, A)``;
  with the medpy it pinned (0.2.2) that is the same value. medpy >= 0.3 swapped the roles of the two
  arguments, so the scorer's call on a current medpy gives ``(|B| - |A|) / |A|`` (``docs/metrics.md``).

Empty masks (documented contract): both empty gives Dice = Jaccard = 1, VOE = RVD = 0 (a correct
prediction of an absent structure); a non-empty prediction with an empty reference gives Dice 0,
Jaccard 0, VOE 1 and RVD NaN (undefined, division by zero).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["overlap_from_counts", "overlap_metrics"]


def overlap_from_counts(pred_voxels: int, ref_voxels: int, intersection_voxels: int) -> dict[str, float]:
    """Dice, Jaccard, VOE and RVD from voxel counts ``|A|``, ``|B|`` and ``|A ∩ B|``.

    Returns:
        ``{"dice", "jaccard", "voe", "rvd"}`` as floats (see the module docstring for empty masks).
    """
    a, b, inter = int(pred_voxels), int(ref_voxels), int(intersection_voxels)
    if min(a, b, inter) < 0 or inter > min(a, b):
        raise ValueError(f"inconsistent voxel counts: |pred|={a}, |ref|={b}, |pred & ref|={inter}")
    if a + b == 0:
        return {"dice": 1.0, "jaccard": 1.0, "voe": 0.0, "rvd": 0.0}
    jaccard = inter / (a + b - inter)
    return {
        "dice": 2.0 * inter / (a + b),
        "jaccard": jaccard,
        "voe": 1.0 - jaccard,
        "rvd": (a - b) / b if b > 0 else math.nan,
    }


def overlap_metrics(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Dice, Jaccard, VOE and RVD of two same-shape masks (nonzero = foreground).

    Args:
        pred: ``(H, W[, D])`` predicted mask.
        ref: Reference mask of the same shape.
    """
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred.shape} and {ref.shape}")
    return overlap_from_counts(
        np.count_nonzero(pred), np.count_nonzero(ref), np.count_nonzero(np.logical_and(pred, ref))
    )
