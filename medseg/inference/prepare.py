"""A scan's network input and body mask in one pass over the scan, a block of slices at a time.

Computes exactly what :func:`medseg.preprocessing.preprocess_image` computes (canonical R-A-S order,
the plan's intensity normalisation, trilinear resampling with ``align_corners=False``; tested to 1e-5)
plus the body mask (HU above a threshold, nearest-neighbour on the same grid, as
``resample_array(mode="nearest")``), but never holds a float copy of the whole scan: the canonical
order is a view (:func:`nibabel.orientations.apply_orientation` flips and transposes without copying),
and each block of output slices reads, normalises and interpolates only the input slices it needs.
Peak memory is the preprocessed image plus one block, instead of three float32 copies of the scan.
Own code for that reason; the grid convention, normalisation and record come from
:mod:`medseg.preprocessing`.
"""

from __future__ import annotations

import nibabel.orientations as nio
import numpy as np
import torch
import torch.nn.functional as F

from medseg.inference.restore import lerp_axis, linear_indices
from medseg.io.orientation import CANONICAL_AXCODES, Reorientation
from medseg.io.volume import Volume
from medseg.preprocessing import PreprocessRecord, normalize_intensity

__all__ = ["nearest_indices", "prepare_scan"]


def nearest_indices(n_in: int, n_out: int, *, axis: int) -> torch.Tensor:
    """Source index of each output sample along spatial ``axis`` (0-2) of nearest resampling.

    Taken from ``F.interpolate(mode="nearest-exact")`` itself (on an index ramp along the same axis of a
    5D tensor), so it matches ``resample_array(mode="nearest")`` to the last float rounding.
    """
    shape, size = [1, 1, 1], [1, 1, 1]
    shape[axis], size[axis] = n_in, n_out
    ramp = torch.arange(n_in, dtype=torch.float32).reshape(1, 1, *shape)
    return F.interpolate(ramp, size=tuple(size), mode="nearest-exact").flatten().long()


def prepare_scan(
    volume: Volume,
    plan,
    *,
    air_threshold_hu: float | None = -500.0,
    slices_per_block: int = 8,
) -> tuple[np.ndarray, PreprocessRecord, torch.Tensor | None]:
    """Preprocess ``volume`` for the network and find the body, in bounded memory.

    Args:
        volume: CT scan in HU, any storage orientation.
        plan: The run's :class:`~medseg.preprocessing.PreprocessingPlan`.
        air_threshold_hu: Body = HU above this; ``None`` skips the mask.
        slices_per_block: Output slices computed at once.

    Returns:
        ``(image, record, body)``: float32 ``(X, Y, Z)`` as :func:`~medseg.preprocessing.preprocess_image`
        returns, its :class:`~medseg.preprocessing.PreprocessRecord`, and a bool ``(X, Y, Z)`` body mask
        (or ``None``).
    """
    transform = nio.ornt_transform(nio.io_orientation(volume.affine), nio.axcodes2ornt(CANONICAL_AXCODES))
    canonical = nio.apply_orientation(np.asarray(volume.array), transform)  # a view, no copy
    canonical_affine = volume.affine @ nio.inv_ornt_aff(transform, volume.shape)
    reorientation = Reorientation(transform=transform, source_shape=volume.shape, source_affine=volume.affine)
    record = PreprocessRecord.for_grid(reorientation, canonical.shape, canonical_affine,
                                       target_spacing_mm=plan.target_spacing_mm)
    in_shape, out_shape = record.canonical_shape, record.resampled_shape

    image = torch.empty(out_shape, dtype=torch.float32)
    body = None if air_threshold_hu is None else torch.empty(out_shape, dtype=torch.bool)
    (x0, x1, wx), (y0, y1, wy), (z0, z1, wz) = (linear_indices(n, m) for n, m in zip(in_shape, out_shape))
    nx, ny, nz = (nearest_indices(n, m, axis=a) for a, (n, m) in enumerate(zip(in_shape, out_shape)))
    for start in range(0, out_shape[2], slices_per_block):
        stop = min(out_shape[2], start + slices_per_block)
        bz0, bz1, bwz, bnz = z0[start:stop], z1[start:stop], wz[start:stop], nz[start:stop]
        used = torch.unique(torch.cat([bz0, bz1, bnz]))  # sorted: the input slices this block reads
        lo = int(used[0])
        slab = _slices(torch.from_numpy(_positive_strides(canonical[:, :, lo : int(used[-1]) + 1])), used - lo)
        at = torch.searchsorted(used, torch.stack([bz0, bz1, bnz]))  # positions in the slab
        values = normalize_intensity(slab, plan)
        values = lerp_axis(values, 2, at[0], at[1], bwz)
        values = lerp_axis(values, 0, x0, x1, wx)
        image[:, :, start:stop] = lerp_axis(values, 1, y0, y1, wy)
        if body is not None:
            body[:, :, start:stop] = slab[:, :, at[2]][nx][:, ny] > air_threshold_hu
    return image.numpy(), record, body


def _slices(slab: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Slices ``keep`` (sorted) of ``slab`` along its last axis, in the slab's own memory order.

    Linear interpolation from 1 mm slices to 5 mm reads 2 input slices per output slice: normalising
    only those (not every slice between them) halves that work; the values are the same voxels'.
    """
    if len(keep) == slab.shape[2]:
        return slab
    out = torch.empty_like(slab[:, :, : len(keep)])  # same strides as the slab (a Fortran-ordered scan stays so)
    for k, index in enumerate(keep.tolist()):
        out[:, :, k] = slab[:, :, index]
    return out


def _positive_strides(view: np.ndarray) -> np.ndarray:
    """``view`` itself when torch can wrap it (positive strides, writeable), else a copy in its own memory order.

    Not ``np.ascontiguousarray``: a NIfTI scan is stored in Fortran order (x fastest), so forcing C order
    transposed the whole scan a block at a time (1.0 s of 2.0 s on a 512 x 512 x 298 scan); the normalisation
    and interpolation below are elementwise and index gathers, so the memory order changes no value.
    """
    if min(view.strides, default=0) < 0 or not view.flags.writeable:
        return view.copy(order="K")
    return view
