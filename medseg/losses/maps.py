"""Per-sample maps that some losses need, computed once per sample by the data pipeline (numpy/scipy).

Map names are also the batch keys the data loader fills and the keyword arguments of ``forward``:

==================  ============  =========================================================================
name                shape         meaning
==================  ============  =========================================================================
``weight_map``      ``(1, ...)``  U-Net border weights for ``border_ce`` (:func:`border_weight_map`)
``distance_map``    ``(C, ...)``  signed distance (mm, negative inside) of each class for ``boundary``
``target_distance`` ``(C, ...)``  unsigned distance (mm) to the other side of each class's boundary,
                                  for ``hausdorff`` (``abs`` of ``distance_map``)
==================  ============  =========================================================================

Distances use :func:`scipy.ndimage.distance_transform_edt` with ``sampling=spacing_mm``; the border weight
map is our own code because scipy/scikit-image have no "distance to the second-nearest object".
Channel ``c`` of a ``(C, ...)`` map is ``labels == c``; with ``num_classes=1`` (one sigmoid channel) it is
``labels > 0``. A class absent from the sample, or filling it, gets an all-zero map (no boundary to
measure from), as in Kervadec et al. and MONAI.

With ``ignore_label`` (partial annotations: voxels of that value are not annotated) every map comes from
the annotated voxels alone: a class's distances are measured to its annotated voxels and to the voxels
annotated as another class, never to an unannotated one, and unannotated voxels get 0 (the losses leave
them out). Without unannotated voxels the maps are those of the dense label map.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy import ndimage

from medseg.boxes import bounding_box
from medseg.errors import ConfigError
from medseg.geometry import check_spacing

__all__ = [
    "MAP_NAMES",
    "border_weight_map",
    "boundary_distance_map",
    "compute_maps",
    "signed_distance_map",
]

MAP_NAMES = ("weight_map", "distance_map", "target_distance")
_BORDER_TOL = 1e-6  # border terms below w0 * _BORDER_TOL are dropped (objects farther than ~5.3 sigma)


def _spatial_labels(labels: np.ndarray, spacing_mm: Sequence[float] | None, name: str = "labels") -> np.ndarray:
    """Strip a leading channel axis of 1 when ``spacing_mm`` shows the array has one axis too many."""
    labels = np.asarray(labels)
    if spacing_mm is not None and labels.ndim == len(spacing_mm) + 1 and labels.shape[0] == 1:
        labels = labels[0]
    if labels.ndim not in (2, 3):
        raise ValueError(f"{name} must be (H, W[, D]) or (1, H, W[, D]), got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        if not np.array_equal(labels, np.round(labels)):
            raise ValueError(f"{name} must hold integer class labels, got dtype {labels.dtype} with fractions")
        labels = labels.astype(np.int64)
    return labels


def _spacing(spacing_mm: Sequence[float], ndim: int) -> tuple[float, ...]:
    return tuple(float(s) for s in check_spacing(spacing_mm, ndim))


def _class_mask(labels: np.ndarray, c: int, num_classes: int, annotated: np.ndarray | None = None) -> np.ndarray:
    mask = labels > 0 if num_classes == 1 else labels == c
    return mask if annotated is None else mask & annotated


def _annotated(labels: np.ndarray, ignore_label: int | None) -> np.ndarray | None:
    """The annotated voxels (``labels != ignore_label``), or ``None`` when all are (no ignore value or none)."""
    if ignore_label is None:
        return None
    annotated = labels != ignore_label
    return None if annotated.all() else annotated


def inside_distance(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """``distance_transform_edt(mask, sampling=spacing)``, computed on the mask's bounding box grown by one voxel.

    Exact: for a voxel inside the box, projecting any background voxel outside the grown box onto it gives a
    closer background voxel of the one-voxel rim, so the crop never misses the nearest one. Small objects
    (lesions) then cost a small transform instead of a whole-volume one.
    """
    out = np.zeros(mask.shape)
    window = bounding_box(mask, margin=1)
    if window is None:
        return out
    out[window] = ndimage.distance_transform_edt(mask[window], sampling=spacing)
    return out


def signed_distance_map(
    labels: np.ndarray, *, num_classes: int, spacing_mm: Sequence[float], ignore_label: int | None = None
) -> np.ndarray:
    """Signed distance (mm) of each class's region: positive outside, negative inside.

    Outside the region the value is the distance to the nearest voxel of the class, inside it is minus the
    distance to the nearest voxel of another class, so every voxel of the class is strictly negative and
    the zero level lies between the two boundary layers. (Kervadec et al. and MONAI shift the inside by one
    voxel so the inner boundary layer is 0; then the perfect prediction is not the unique minimum of the
    boundary loss.)

    Args:
        labels: Integer label map ``(H, W[, D])`` or ``(1, H, W[, D])``.
        num_classes: Number of logit channels C (1 = binary, channel is ``labels > 0``).
        spacing_mm: Voxel size per spatial axis.
        ignore_label: Value of unannotated voxels: distances run between annotated voxels only, inside
            to the nearest voxel annotated as another class, and unannotated voxels get 0.

    Returns:
        float32 ``(C, H, W[, D])``; all zero for a class absent from, or filling, the (annotated) sample.
    """
    labels = _spatial_labels(labels, spacing_mm)
    spacing = _spacing(spacing_mm, labels.ndim)
    annotated = _annotated(labels, ignore_label)
    out = np.zeros((num_classes, *labels.shape), dtype=np.float32)
    for c in range(num_classes):
        mask = _class_mask(labels, c, num_classes, annotated)
        if annotated is not None:
            other = annotated & ~mask
            if mask.any() and other.any():
                inside = ndimage.distance_transform_edt(~other, sampling=spacing)
                outside = ndimage.distance_transform_edt(~mask, sampling=spacing)
                out[c] = np.where(mask, -inside, np.where(other, outside, 0.0))
        elif mask.any() and not mask.all():
            out[c] = ndimage.distance_transform_edt(~mask, sampling=spacing) - inside_distance(mask, spacing)
    return out


def boundary_distance_map(
    labels: np.ndarray, *, num_classes: int, spacing_mm: Sequence[float], ignore_label: int | None = None
) -> np.ndarray:
    """Unsigned distance (mm) from each voxel to the nearest voxel on the other side of each class boundary.

    This is the distance field of Karimi & Salcudean's Hausdorff loss (``|signed_distance_map|``), ``(C, ...)``.
    """
    sdm = signed_distance_map(labels, num_classes=num_classes, spacing_mm=spacing_mm, ignore_label=ignore_label)
    return np.abs(sdm)


def border_weight_map(
    labels: np.ndarray,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    spacing_mm: Sequence[float] | None = None,
    class_weights: str | Sequence[float] | None = "balanced",
    ignore_label: int | None = None,
) -> np.ndarray:
    """U-Net weight map ``w(x) = w_c(x) + w0 exp(-(d1(x) + d2(x))^2 / (2 sigma^2))``.

    Ronneberger, Fischer & Brox, "U-Net: Convolutional networks for biomedical image segmentation",
    MICCAI 2015, eq. 2. Objects are the connected components (full connectivity) of each foreground class;
    ``d1``/``d2`` are the distances to the nearest and second-nearest object. As in the paper's use (borders
    separating touching objects), the border term is added on background voxels (label 0) only.

    Our own code: scipy and scikit-image have no second-nearest-object distance. Each object's distance
    transform is computed only in its bounding box grown by the distance at which the border term falls
    below ``w0 * 1e-6`` (about 5.3 sigma), so many small lesions stay cheap.

    Args:
        labels: Integer label map ``(H, W[, D])``.
        w0: Border weight.
        sigma: Border width, in pixels when ``spacing_mm`` is None, else in mm.
        spacing_mm: Voxel size per axis; ``None`` measures distances in pixels.
        class_weights: ``"balanced"`` (``N / (K n_k)`` over the K classes present, so the mean of ``w_c`` is 1),
            ``None`` (all 1) or one weight per class label.
        ignore_label: Value of unannotated voxels: objects and class balance come from the annotated
            voxels, and unannotated voxels get weight 0.

    Returns:
        float32 array shaped like ``labels``.
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels must be (H, W) or (H, W, D), got shape {labels.shape}")
    labels = _spatial_labels(labels, None)
    annotated = _annotated(labels, ignore_label)
    if annotated is not None:  # weights of the annotated voxels as if the others were absent
        weights = border_weight_map(np.where(annotated, labels, 0), w0=w0, sigma=sigma, spacing_mm=spacing_mm,
                                    class_weights=_annotated_balance(labels, annotated, class_weights))
        return np.where(annotated, weights, 0.0).astype(np.float32)
    if not (w0 >= 0 and sigma > 0):
        raise ValueError(f"w0={w0} must be >= 0 and sigma={sigma} > 0")
    spacing = (1.0,) * labels.ndim if spacing_mm is None else _spacing(spacing_mm, labels.ndim)
    weights = _class_balance(labels, class_weights)

    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    cutoff = sigma * np.sqrt(2 * np.log(1 / _BORDER_TOL))
    margin = [int(np.ceil(cutoff / s)) for s in spacing]
    structure = ndimage.generate_binary_structure(labels.ndim, labels.ndim)
    for cls in np.unique(labels[labels > 0]):
        components, _ = ndimage.label(labels == cls, structure=structure)
        for k, box in enumerate(ndimage.find_objects(components), start=1):
            window = tuple(slice(max(b.start - m, 0), min(b.stop + m, n)) for b, m, n in zip(box, margin, labels.shape))
            dist = ndimage.distance_transform_edt(components[window] != k, sampling=spacing)
            near, second = d1[window], d2[window]
            d2[window] = np.minimum(second, np.maximum(near, dist))
            d1[window] = np.minimum(near, dist)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    return (weights + np.where(labels == 0, border, 0.0)).astype(np.float32)


def _annotated_balance(labels: np.ndarray, annotated: np.ndarray, class_weights):
    """``class_weights`` as one weight per label, ``"balanced"`` counted over the annotated voxels only."""
    if class_weights != "balanced" or not annotated.any():
        return class_weights
    values, counts = np.unique(labels[annotated], return_counts=True)
    table = np.zeros(int(values.max()) + 1)
    table[values] = annotated.sum() / (len(values) * counts)
    return table


def _class_balance(labels: np.ndarray, class_weights: str | Sequence[float] | None) -> np.ndarray:
    """Per-voxel class-balancing weights ``w_c``."""
    if class_weights is None:
        return np.ones(labels.shape)
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(f"class_weights={class_weights!r} must be 'balanced', None or one weight per class")
        values, counts = np.unique(labels, return_counts=True)
        table = np.zeros(int(values.max()) + 1)
        table[values] = labels.size / (len(values) * counts)
        return table[labels]
    table = np.asarray(class_weights, dtype=float)
    if table.ndim != 1 or labels.max() >= len(table) or (table < 0).any():
        raise ValueError(f"class_weights={list(table)} must hold one non-negative weight per class label")
    return table[labels]


def compute_maps(
    labels: np.ndarray,
    names: Iterable[str],
    *,
    num_classes: int,
    spacing_mm: Sequence[float],
    options: Mapping[str, Mapping] | None = None,
    ignore_label: int | None = None,
) -> dict[str, np.ndarray]:
    """Compute the named maps for one sample, ready for the loader to stack into a batch.

    Args:
        labels: One sample's integer label map ``(1, H, W[, D])`` (a bare ``(H, W[, D])`` is accepted).
        names: Map names, usually ``loss.required_maps``; see :data:`MAP_NAMES`.
        num_classes: Number of logit channels C.
        spacing_mm: Voxel size per spatial axis.
        options: Per-map keyword arguments, usually ``loss.map_options``; for ``weight_map`` the keys of
            :func:`border_weight_map` (``w0``, ``sigma`` in pixels, or ``sigma_mm`` in mm, ``class_weights``).
        ignore_label: Value of unannotated voxels; the maps then come from the annotated voxels alone.

    Returns:
        ``{name: float32 array}``: ``weight_map`` ``(1, ...)``, the others ``(C, ...)``.
    """
    names = list(names)
    unknown = sorted(set(names) - set(MAP_NAMES))
    if unknown:
        raise ConfigError(f"unknown map name(s) {unknown}; valid names: {', '.join(MAP_NAMES)}")
    spatial = _spatial_labels(labels, spacing_mm)
    spacing = _spacing(spacing_mm, spatial.ndim)
    options = dict(options or {})
    out: dict[str, np.ndarray] = {}
    if "distance_map" in names or "target_distance" in names:
        sdm = signed_distance_map(spatial, num_classes=num_classes, spacing_mm=spacing, ignore_label=ignore_label)
        if "distance_map" in names:
            out["distance_map"] = sdm
        if "target_distance" in names:
            out["target_distance"] = np.abs(sdm)
    if "weight_map" in names:
        kwargs = dict(options.get("weight_map", {}))
        if "sigma_mm" in kwargs:
            kwargs["sigma"] = kwargs.pop("sigma_mm")
            kwargs["spacing_mm"] = spacing
        out["weight_map"] = border_weight_map(spatial, **kwargs, ignore_label=ignore_label)[None]
    return out
