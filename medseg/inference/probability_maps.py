"""Liver and tumor probability maps and an uncertainty map on the scan's grid, stored compactly as uint8.

From the (ensemble's mean) class probabilities ``p`` on the preprocessed grid:

- ``liver``: ``p[liver] + p[tumor]``, the probability of the LiTS liver region (tumor is inside the liver);
- ``tumor``: ``p[tumor]``;
- ``uncertainty``: the entropy of ``p`` over the ``K`` classes divided by ``log K``, in ``[0, 1]`` (0: one
  class certain, 1: all classes equally likely). For a fold ensemble this is the entropy of the folds' mean,
  the total predictive uncertainty (Lakshminarayanan et al. 2017, *Deep Ensembles*, NeurIPS), high both
  where each fold is unsure and where the folds disagree.

Each map is resampled trilinearly to the scan's voxel grid (as
:func:`medseg.preprocessing.restore_to_scan`, one map at a time, so peak memory is one float32 scan-sized
map) and quantised: ``stored = round(255 * value)``, ``value = stored / 255`` (error at most ``0.5 / 255``
~ 0.002). The NIfTI files carry ``scl_slope`` = :data:`PROBABILITY_SCALE` (1/255), so viewers and
nibabel's ``get_fdata()`` show the values in ``[0, 1]``; ``dataobj.get_unscaled()`` gives the stored uint8.

Own code: a few lines over the restore step; MONAI has no uint8 probability writer.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["MAP_NAMES", "PROBABILITY_SCALE", "normalised_entropy", "probability_maps", "quantise"]

#: The maps, in the order :func:`probability_maps` returns them.
MAP_NAMES = ("liver", "tumor", "uncertainty")

#: A stored uint8 value times this is the probability (the NIfTI ``scl_slope``): the float32 just below
#: ``1 / 255``, so that a stored 255 reads as at most 1.0 (``float32(1 / 255) * 255`` is 1.00000006).
PROBABILITY_SCALE = float(np.nextafter(np.float32(1.0 / 255.0), np.float32(0.0)))


def quantise(values: np.ndarray) -> np.ndarray:
    """``round(255 * values)`` as uint8 (values clipped to ``[0, 1]``)."""
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def normalised_entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """``-sum_k p_k log p_k / log K`` of ``(K, ...)`` probabilities: ``(...)`` in ``[0, 1]`` (``0 log 0 = 0``)."""
    p = probabilities.clamp(min=0.0)
    terms = torch.where(p > 0, p * torch.log(p.clamp(min=1e-30)), torch.zeros_like(p))
    return (-terms.sum(0) / math.log(probabilities.shape[0])).clamp_(0.0, 1.0)


def probability_maps(scores: torch.Tensor, record, *, liver: int = 1, tumor: int = 2) -> dict[str, np.ndarray]:
    """The uint8 maps of :data:`MAP_NAMES` on the scan's grid.

    Args:
        scores: ``(K, X, Y, Z)`` logits (or an ensemble's log mean probabilities) on the preprocessed grid.
        record: The scan's :class:`~medseg.preprocessing.PreprocessRecord`.
        liver, tumor: Class indices.

    Returns:
        Name -> ``(X0, Y0, Z0)`` uint8 in the scan's voxel order (``value / 255`` is the probability).
    """
    from medseg.preprocessing import restore_to_scan

    probabilities = torch.softmax(scores.float(), dim=0)
    maps = {
        "liver": probabilities[liver] + probabilities[tumor],
        "tumor": probabilities[tumor],
        "uncertainty": normalised_entropy(probabilities),
    }
    del probabilities
    if hasattr(record, "to_scan"):  # an imported model's record (medseg.interop): its own way back
        return {name: quantise(record.to_scan(maps.pop(name)[None])[0]) for name in MAP_NAMES}
    return {name: quantise(restore_to_scan(maps.pop(name)[None], record)[0]) for name in MAP_NAMES}
