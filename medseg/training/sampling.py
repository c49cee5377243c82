"""Where patches come from: random and foreground-centred patch positions, and padded crops.

Foreground oversampling follows nnU-Net (Isensee et al., Nature Methods 18, 2021): a fixed share of each
batch (default one third) is centred on a voxel of a foreground class picked uniformly among the classes
present in the case, so small structures (tumors) are seen as often as large ones; the other patches are
placed uniformly at random. nnU-Net rounds the share per batch (with 2 patches a batch, one third becomes
one half); here the count per batch is ``floor(B * f)`` plus one with probability ``frac(B * f)``, so the
expected share is exactly ``f`` for every batch size.

Plain numpy on purpose: MONAI's ``RandCropByLabelClassesd`` needs the whole label map in memory per
sample, while these functions read only the patch from a memory-mapped array.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["centered_start", "crop_patch", "foreground_count", "pick_foreground_voxel", "random_start"]


def foreground_count(batch_size: int, fraction: float, rng: np.random.Generator) -> int:
    """Number of foreground-centred patches in one batch: expected value ``batch_size * fraction``."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"foreground_fraction must be in [0, 1], got {fraction}")
    expected = batch_size * fraction
    base = int(np.floor(expected))
    return min(batch_size, base + int(rng.random() < expected - base))


def pick_foreground_voxel(
    class_locations: Mapping[int, np.ndarray], rng: np.random.Generator, *, ignore_label: int | None = None
) -> tuple[int, np.ndarray] | None:
    """Pick a class uniformly among those with stored locations, then one of its voxels.

    Args:
        class_locations: class -> ``(N, 3)`` voxel indices (classes > 0 only are considered).
        rng: Random generator.
        ignore_label: The value of unannotated voxels (partial annotations): never a foreground class, so
            a foreground patch is always centred on an annotated foreground voxel.

    Returns:
        ``(class, (3,) voxel index)``, or ``None`` when the case has no foreground.
    """
    classes = sorted(c for c, loc in class_locations.items() if c > 0 and c != ignore_label and len(loc))
    if not classes:
        return None
    cls = classes[int(rng.integers(len(classes)))]
    locations = class_locations[cls]
    return cls, np.asarray(locations[int(rng.integers(len(locations)))], dtype=np.int64)


def random_start(shape: Sequence[int], size: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Uniform random patch start per axis: inside the volume when it fits, else the volume lies at a
    random offset inside the (padded) patch."""
    starts = []
    for n, s in zip(shape, size):
        low, high = (0, n - s) if n >= s else (n - s, 0)
        starts.append(int(rng.integers(low, high + 1)))
    return np.asarray(starts, dtype=np.int64)


def centered_start(center: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """Patch start that puts voxel ``center`` at patch index ``size // 2`` (the patch may leave the volume)."""
    return np.asarray(center, dtype=np.int64) - np.asarray(size, dtype=np.int64) // 2


def crop_patch(array: np.ndarray, start: Sequence[int], size: Sequence[int], pad_value: float = 0) -> np.ndarray:
    """Copy ``array[start : start + size]``, filling the part outside the volume with ``pad_value``.

    ``start`` and ``size`` have one entry per axis of ``array``.

    Only the overlap is read, so ``array`` can be a memory map of a large volume.
    """
    start = np.asarray(start, dtype=np.int64)
    size = np.asarray(size, dtype=np.int64)
    if len(start) != array.ndim or len(size) != array.ndim:
        raise ValueError(f"start {start.tolist()} and size {size.tolist()} must have {array.ndim} entries")
    out = np.full(tuple(size), pad_value, dtype=array.dtype)
    src, dst = [], []
    for n, a, s in zip(array.shape, start, size):
        lo, hi = max(int(a), 0), min(int(a + s), n)
        if lo >= hi:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - int(a), hi - int(a)))
    out[tuple(dst)] = array[tuple(src)]
    return out
