"""CT intensity normalisation: clip to a HU range, subtract, divide (see :class:`PreprocessingPlan`)."""

from __future__ import annotations

import numpy as np
import torch

from medseg.preprocessing.plan import PreprocessingPlan

__all__ = ["normalize_intensity"]


def normalize_intensity(array: np.ndarray | torch.Tensor, plan: PreprocessingPlan) -> np.ndarray | torch.Tensor:
    """``(clip(array, *plan.clip_hu) - plan.mean) / plan.std`` as float32 (a new array; input untouched).

    Args:
        array: HU values, any shape, numpy or torch.
        plan: Supplies ``clip_hu``, ``mean`` and ``std`` (nnU-Net CT z-score or a fixed window).
    """
    low, high = plan.clip_hu
    if isinstance(array, torch.Tensor):  # one new tensor, then in place: a CT is 100M+ voxels
        out = array.to(torch.float32, copy=True).clamp_(low, high)
        return out.sub_(plan.mean).div_(plan.std)
    out = np.array(array, dtype=np.float32, copy=True)
    np.clip(out, low, high, out=out)
    out -= np.float32(plan.mean)
    out /= np.float32(plan.std)
    return out
