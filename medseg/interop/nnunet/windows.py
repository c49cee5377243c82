"""nnU-Net v2's sliding-window layout, reproduced (``nnunetv2.inference.sliding_window_prediction``).

medseg's own window grid (MONAI's: steps of ``int(window * (1 - overlap))``, the last window moved to the
end) and nnU-Net's differ: nnU-Net takes the fewest steps of at most ``window * step`` voxels and spreads
them evenly (``compute_steps_for_sliding_window``: for an axis of 110 voxels, a window of 64 and step 0.5,
windows at 0, 23 and 46, where MONAI places 0, 32 and 46). Its Gaussian weight is a unit impulse filtered
with :func:`scipy.ndimage.gaussian_filter` (sigma = window / 8, ``mode="constant"``), scaled to a maximum
of 10 and stored as float16, zeros (the window's far corners underflow) replaced by the smallest
non-zero weight; here the same float16 weights, divided by 10 (the scale cancels in the blend). MONAI
samples an erf kernel. Where a scan corner is covered only by window corners, these underflowed weights
decide the blend, so they are reproduced exactly. A network imported from
nnU-Net runs with these (:class:`medseg.inference.sliding_window.WindowSettings` ``layout="nnunet"``), so
its windows see exactly the inputs they see under nnU-Net.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

__all__ = ["nnunet_gaussian", "nnunet_steps", "nnunet_window_slices"]


def nnunet_steps(image_size: Sequence[int], window: Sequence[int], step: float) -> list[list[int]]:
    """Window start positions per axis (``step``: fraction of the window, ``1 - overlap``)."""
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1], got {step}")
    out = []
    for n, w in zip(image_size, window):
        if n < w:
            raise ValueError(f"image size {tuple(image_size)} is smaller than the window {tuple(window)}")
        count = math.ceil((n - w) / (w * step)) + 1
        stride = (n - w) / (count - 1) if count > 1 else 0.0
        out.append([int(np.round(stride * i)) for i in range(count)])
    return out


def nnunet_window_slices(image_size: Sequence[int], window: Sequence[int], step: float
                         ) -> list[tuple[slice, ...]]:
    """Every window of the grid as a tuple of slices (first axis slowest, as nnU-Net orders them)."""
    starts = nnunet_steps(image_size, window, step)
    grids = np.meshgrid(*[np.asarray(s) for s in starts], indexing="ij")
    return [tuple(slice(int(s), int(s) + w) for s, w in zip(point, window))
            for point in zip(*(g.ravel() for g in grids))]


def nnunet_gaussian(window: Sequence[int], *, sigma_scale: float = 1.0 / 8, device=None) -> torch.Tensor:
    """nnU-Net's importance map of a window (its float16 values, as float32 with maximum 1), no zeros."""
    impulse = np.zeros(tuple(window))
    impulse[tuple(w // 2 for w in window)] = 1.0
    weights = gaussian_filter(impulse, [w * sigma_scale for w in window], 0, mode="constant", cval=0)
    weights = torch.as_tensor(weights / weights.max() * 10.0).to(torch.float16)  # nnU-Net's scale and dtype
    weights[weights == 0] = weights[weights != 0].min()
    return weights.to(device=device, dtype=torch.float32) / 10.0
