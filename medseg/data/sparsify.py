"""Sparse annotations from dense label maps, to plan an annotation budget (issue #30).

Gotkowski et al., "Embarrassingly simple scribble supervision for 3D medical segmentation" /
"nnU-Net for partial annotations" (arXiv:2403.12834), train nnU-Net from partially annotated volumes with an
*ignore* label and report that a dense subset of slices, scribbles, or dense patches reach most of the dense
Dice at a fraction of the annotation time. These functions turn a dense label map into such a partial one, so
a group can measure what an annotation budget buys before annotating:

=============  =============================================================================================
scheme         what stays annotated (everything else becomes ``ignore_label``)
=============  =============================================================================================
``slices``     every k-th axial slice, ``k = round(1 / fraction)``, from a random offset: what a
               radiologist contouring every k-th slice produces
``scribbles``  on every k-th axial slice, per class present (background included): one *border* stroke (a
               run of the class's inner contour, half of it around the class's centre) and one *interior*
               stroke (a straight segment through the point deepest inside the class, along a random
               direction, at least 2 voxels from its border), as the paper's scribble scheme describes
``patches``    random cubic blocks, half of them centred on a voxel of a foreground class (picked uniformly
               among the classes present), added until ``fraction`` of the voxels are annotated
=============  =============================================================================================

Every function is deterministic for a given generator and returns a new ``uint8`` map; the annotated
fraction (:func:`annotated_fraction`) is what the budget buys (for scribbles it is far below ``fraction``,
which there is the share of slices that get strokes).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

__all__ = ["SCHEMES", "annotated_fraction", "axial_axis", "sparse_patches", "sparse_scribbles", "sparse_slices",
           "sparsify_labels"]


def _check(labels: np.ndarray, fraction: float, ignore_label: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be a 3D label map, got shape {labels.shape}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction={fraction} must lie in (0, 1]")
    if (labels == ignore_label).any():
        raise ValueError(f"labels already hold the ignore value {ignore_label}: sparsify a dense label map")
    return labels


def annotated_fraction(labels: np.ndarray, ignore_label: int) -> float:
    """Share of voxels not set to ``ignore_label`` (1.0 for a dense map)."""
    labels = np.asarray(labels)
    return float(np.count_nonzero(labels != ignore_label)) / max(labels.size, 1)


def axial_axis(direction: np.ndarray) -> int:
    """The array axis closest to the superior-inferior world axis (``direction``: 3x3, column ``i`` the
    world direction of array axis ``i``, as :attr:`medseg.io.Volume.direction`)."""
    return int(np.argmax(np.abs(np.asarray(direction)[2])))


def _chosen_slices(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Every k-th of ``n`` slices, ``k = max(1, round(1 / fraction))``, from a random offset below k."""
    step = max(1, round(1.0 / fraction))
    return np.arange(int(rng.integers(step)), n, step)


def sparse_slices(labels: np.ndarray, fraction: float, *, axis: int, ignore_label: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Keep every k-th slice along ``axis`` (``k = round(1 / fraction)``); the others become ``ignore_label``."""
    labels = _check(labels, fraction, ignore_label)
    out = np.full(labels.shape, ignore_label, dtype=np.uint8)
    index = [slice(None)] * 3
    index[axis] = _chosen_slices(labels.shape[axis], fraction, rng)
    out[tuple(index)] = labels[tuple(index)]
    return out


def _border_stroke(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Half of the inner contour of ``mask`` (2D): the contour pixels within a random half-plane through
    the mask's centroid, i.e. a connected run for a convex region."""
    contour = mask & ~ndimage.binary_erosion(mask)
    points = np.argwhere(contour)
    if len(points) == 0:
        return contour
    angle = rng.uniform(0, 2 * np.pi)
    side = (points - np.argwhere(mask).mean(0)) @ np.array([np.cos(angle), np.sin(angle)]) >= 0
    out = np.zeros_like(mask)
    out[tuple(points[side].T)] = True
    return out


def _interior_stroke(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A straight segment through the pixel deepest inside ``mask`` (2D), along a random direction, kept
    where it is at least 2 pixels from the border (1 pixel for thin regions) and connected to that pixel."""
    depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    centre = np.unravel_index(int(np.argmax(depth)), mask.shape)
    inner = depth >= min(2.0, float(depth.max()))
    angle = rng.uniform(0, np.pi)
    steps = np.arange(-max(mask.shape), max(mask.shape) + 1)
    rows = np.rint(centre[0] + steps * np.sin(angle)).astype(int)
    cols = np.rint(centre[1] + steps * np.cos(angle)).astype(int)
    inside = (rows >= 0) & (rows < mask.shape[0]) & (cols >= 0) & (cols < mask.shape[1])
    line = np.zeros_like(mask)
    line[rows[inside], cols[inside]] = True
    line &= inner
    components, _ = ndimage.label(line, structure=np.ones((3, 3)))
    return components == components[centre] if components[centre] else line


def sparse_scribbles(labels: np.ndarray, fraction: float, *, axis: int, ignore_label: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Scribbles on every k-th slice along ``axis`` (``k = round(1 / fraction)``): per class present, a
    border and an interior stroke (see the module docstring); every other voxel becomes ``ignore_label``."""
    labels = _check(labels, fraction, ignore_label)
    out = np.full(labels.shape, ignore_label, dtype=np.uint8)
    for z in _chosen_slices(labels.shape[axis], fraction, rng):
        plane = np.take(labels, z, axis=axis)
        strokes = np.full(plane.shape, ignore_label, dtype=np.uint8)
        for value in np.unique(plane):
            mask = plane == value
            strokes[_border_stroke(mask, rng) | _interior_stroke(mask, rng)] = value
        index = [slice(None)] * 3
        index[axis] = z
        out[tuple(index)] = strokes
    return out


def sparse_patches(labels: np.ndarray, fraction: float, *, ignore_label: int, rng: np.random.Generator,
                   block: int | None = None) -> np.ndarray:
    """Random annotated cubes of ``block`` voxels a side (default: a sixth of the smallest axis, at least
    4) until ``fraction`` of the voxels are annotated; half are centred on a foreground voxel."""
    labels = _check(labels, fraction, ignore_label)
    size = np.minimum(block or max(4, min(labels.shape) // 6), labels.shape)
    out = np.full(labels.shape, ignore_label, dtype=np.uint8)
    kept = np.zeros(labels.shape, dtype=bool)
    classes = [c for c in np.unique(labels) if c > 0]
    target = int(np.ceil(fraction * labels.size))
    for attempt in range(100_000):
        if np.count_nonzero(kept) >= target:
            break
        if classes and attempt % 2 == 0:
            voxels = np.argwhere(labels == classes[int(rng.integers(len(classes)))])
            centre = voxels[int(rng.integers(len(voxels)))]
        else:
            centre = np.array([int(rng.integers(n)) for n in labels.shape])
        start = np.clip(centre - size // 2, 0, np.asarray(labels.shape) - size)
        kept[tuple(slice(a, a + s) for a, s in zip(start, size))] = True
    out[kept] = labels[kept]
    return out


#: Scheme name -> ``f(labels, fraction, *, axis, ignore_label, rng)``.
SCHEMES: dict[str, Callable[..., np.ndarray]] = {
    "slices": sparse_slices,
    "scribbles": sparse_scribbles,
    "patches": lambda labels, fraction, *, axis, ignore_label, rng: sparse_patches(
        labels, fraction, ignore_label=ignore_label, rng=rng),
}


def sparsify_labels(labels: np.ndarray, scheme: str, fraction: float, *, axis: int, ignore_label: int,
                    rng: np.random.Generator) -> np.ndarray:
    """A partial label map of ``labels`` by ``scheme`` (one of :data:`SCHEMES`); see the module docstring.

    Raises:
        ValueError: Unknown scheme, ``fraction`` outside (0, 1], an ignore value the map already holds.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme={scheme!r} is not one of {', '.join(sorted(SCHEMES))}")
    return SCHEMES[scheme](labels, fraction, axis=axis, ignore_label=ignore_label, rng=rng)
