"""Tissue and lesion volumes of a liver/tumor label map: what a clinical report needs.

Regions follow LiTS: liver = labels {1, 2} (the tumor is part of the liver), parenchyma = {1},
tumor = {2}. Volumes are voxel counts times the voxel volume (exact for the voxel model; no partial-volume
correction): with an affine, ``|det|`` of its 3x3, so a gantry-tilted or sheared grid is measured right
(:func:`medseg.geometry.voxel_volume_ml`), and diameters use the true axis geometry too. Tumor burden
``= 100 * tumor_ml / liver_ml`` (percent of the liver, tumor included), 0 when both are empty and NaN
for tumor without liver.

A structure that touches the border of the scan may continue outside the field of view: it is measured
as seen and flagged ``truncated: true``, never dropped or zeroed.

JSON contract (``medseg volumes --json`` and ``<case>_volumes.json`` written by ``medseg predict``):
``liver_ml``, ``liver_parenchyma_ml``, ``tumor_ml``, ``tumor_burden_percent``, ``lesion_count``,
``liver_truncated``, ``tumor_truncated``, ``spacing_mm``, ``hu`` (per region ``mean``/``std``, only with a
scan) and ``lesions``: a list (largest first) of ``{lesion, volume_ml, axial_diameter_mm, short_axis_mm,
max_diameter_mm, centroid_mm, truncated[, hu_mean, hu_std]}``; ``axial_diameter_mm`` and ``short_axis_mm``
are the RECIST long and short axes (:func:`medseg.evaluation.diameters.recist_axes_mm`); ``centroid_mm``
is in scanner (RAS+) coordinates when an affine is given, else in mm from voxel (0, 0, 0) along the array axes.
:func:`volumes_report` adds ``labels``: the label mapping used (``{"liver": [...], "tumor": [...],
"explicit": bool}``, :class:`medseg.io.label_map.LabelMapping`; DICOM SEG segments as ``"N label"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medseg.boxes import bounding_box, touches_border
from medseg.evaluation.diameters import max_diameter_mm, recist_axes_mm
from medseg.evaluation.lesions import label_lesions
from medseg.geometry import axis_skew_deg, check_spacing, voxel_volume_ml
from medseg.io.volume import Volume
from medseg.labels import REGION_LABELS, region_masks, tumor_burden_percent

__all__ = ["REGION_LABELS", "measure_volumes", "region_masks", "touches_border", "volumes_report"]


def _axial_axis(affine: np.ndarray | None, ndim: int) -> int:
    """The array axis most aligned with the world superior-inferior axis (last axis without affine)."""
    if affine is None:
        return ndim - 1
    directions = np.asarray(affine, dtype=float)[:3, :3]
    directions = directions / np.linalg.norm(directions, axis=0, keepdims=True)
    return int(np.argmax(np.abs(directions[2])))


def _skewed_axes(affine: np.ndarray | None) -> np.ndarray | None:
    """The affine's 3x3 when its axes are not orthogonal (diameters then need it), else ``None``."""
    return None if affine is None or axis_skew_deg(affine) < 1e-3 else np.asarray(affine, dtype=float)[:3, :3]


def _hu_stats(image: np.ndarray | None, mask: np.ndarray) -> dict[str, float] | None:
    if image is None:
        return None
    box = bounding_box(mask)  # select inside the mask's box: boolean indexing of a whole scan is slow
    values = np.asarray(image)[box][mask[box]] if box is not None else np.zeros(0)
    if values.size == 0:
        return {"mean": math.nan, "std": math.nan}
    values = values.astype(float)
    return {"mean": float(values.mean()), "std": float(values.std())}


def measure_volumes(
    labels: np.ndarray,
    *,
    spacing_mm: Sequence[float],
    affine: np.ndarray | None = None,
    image: np.ndarray | None = None,
    connectivity: int = 3,
) -> dict:
    """Volumes (mL), tumor burden (%), HU statistics and per-lesion measurements of a label map.

    Args:
        labels: ``(X, Y, Z)`` LiTS label map (0 background, 1 liver, 2 tumor).
        spacing_mm: Voxel size along each array axis, in mm (must agree with ``affine`` when both given).
        affine: Optional ``(4, 4)`` voxel-to-world matrix; gives scanner-coordinate centroids and the
            axial direction.
        image: Optional CT scan of the same shape, in HU, for mean/std HU per region and lesion.
        connectivity: Lesion connectivity (1, 2 or 3; see :mod:`medseg.evaluation.lesions`).

    Returns:
        The dict described in the module docstring (JSON-serialisable).
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be a 3D label map, got shape {labels.shape}")
    spacing = check_spacing(spacing_mm, 3)
    if image is not None and np.shape(image) != labels.shape:
        raise ValueError(f"image shape {np.shape(image)} does not match labels shape {labels.shape}")
    if affine is not None and not np.allclose(np.linalg.norm(np.asarray(affine)[:3, :3], axis=0), spacing, rtol=1e-4):
        raise ValueError(f"spacing_mm {tuple(spacing)} does not match the affine's voxel size")
    voxel_ml = voxel_volume_ml(spacing, affine=affine)
    window = bounding_box(labels) or tuple(slice(0, 0) for _ in labels.shape)  # views: no whole-map masks
    origin = np.array([w.start for w in window], dtype=int)
    masks = region_masks(labels[window])
    image = None if image is None else np.asarray(image)[window]
    liver_ml = int(np.count_nonzero(masks["liver"])) * voxel_ml
    tumor_ml = int(np.count_nonzero(masks["tumor"])) * voxel_ml
    burden = tumor_burden_percent(liver_ml, tumor_ml)
    result = {
        "liver_ml": liver_ml,
        "liver_parenchyma_ml": int(np.count_nonzero(masks["parenchyma"])) * voxel_ml,
        "tumor_ml": tumor_ml,
        "tumor_burden_percent": burden,
        "liver_truncated": _touches_border(masks["liver"], origin, labels.shape),
        "tumor_truncated": _touches_border(masks["tumor"], origin, labels.shape),
        "spacing_mm": [float(s) for s in spacing],
    }
    if image is not None:
        result["hu"] = {name: _hu_stats(image, mask) for name, mask in masks.items()}
    result["lesions"] = _measure_lesions(masks["tumor"], spacing, affine, image, connectivity,
                                         origin=origin, shape=labels.shape)
    result["lesion_count"] = len(result["lesions"])
    return result


def _touches_border(mask: np.ndarray, origin: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether ``mask`` (a crop of a map of ``shape`` starting at ``origin``) reaches the map's border."""
    box = bounding_box(mask)
    return box is not None and any(s.start + o == 0 or s.stop + o == n for s, o, n in zip(box, origin, shape))


def _measure_lesions(
    tumor: np.ndarray, spacing: np.ndarray, affine: np.ndarray | None, image: np.ndarray | None, connectivity: int,
    *, origin: np.ndarray, shape: tuple[int, ...],
) -> list[dict]:
    """Per-lesion volume, diameters, centroid, truncation flag (and HU), largest lesion first.

    ``tumor`` and ``image`` are crops of a map of ``shape`` starting at voxel ``origin``.
    """
    box = bounding_box(tumor)
    if box is None:
        return []
    offset = np.array([s.start for s in box], dtype=int)  # in the crop
    lesion_labels, count = label_lesions(tumor[box], connectivity=connectivity)
    voxel_ml = voxel_volume_ml(spacing, affine=affine)
    axial = _axial_axis(affine, 3)
    axes = _skewed_axes(affine)
    sizes = np.bincount(lesion_labels.ravel(), minlength=count + 1)
    centroids = np.asarray(ndimage.center_of_mass(lesion_labels > 0, lesion_labels, range(1, count + 1)), dtype=float)
    centroids = centroids.reshape(count, 3) + offset + origin
    centroids = (
        centroids @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]
        if affine is not None
        else (centroids * spacing)
    )
    lesions = []
    for index, lesion_box in enumerate(ndimage.find_objects(lesion_labels), start=1):
        mask = lesion_labels[lesion_box] == index
        touches = any(sl.start + lo + o == 0 or sl.stop + lo + o == n
                      for sl, lo, o, n in zip(lesion_box, offset, origin, shape))  # fmt: skip
        recist = recist_axes_mm(mask, spacing_mm=spacing, axial_axis=axial, axes_mm=axes)
        lesion = {
            "volume_ml": float(sizes[index]) * voxel_ml,
            "axial_diameter_mm": recist.long_axis_mm,
            "short_axis_mm": recist.short_axis_mm,
            "max_diameter_mm": max_diameter_mm(mask, spacing_mm=spacing, axes_mm=axes),
            "centroid_mm": [float(c) for c in centroids[index - 1]],
            "truncated": bool(touches),
        }
        if image is not None:
            full_box = tuple(slice(sl.start + lo, sl.stop + lo) for sl, lo in zip(lesion_box, offset))
            stats = _hu_stats(np.asarray(image)[full_box], mask)
            lesion.update(hu_mean=stats["mean"], hu_std=stats["std"])
        lesions.append(lesion)
    lesions.sort(key=lambda item: -item["volume_ml"])
    for number, lesion in enumerate(lesions, start=1):
        lesion["lesion"] = number
    return lesions


def volumes_report(label: Volume, image: Volume | None = None, *, connectivity: int = 3, labels=None) -> dict:
    """:func:`measure_volumes` for a label :class:`~medseg.io.volume.Volume` (and optional scan Volume).

    Args:
        label: The label map (read with :func:`medseg.io.reader.read_label_map` to map another tool's
            values; its ``meta["label_mapping"]`` is recorded).
        image: The scan, for HU statistics. A label map on the same world grid stored in another voxel
            order (e.g. LAS against the series' L,P,I) is reoriented onto it exactly.
        connectivity: Lesion connectivity.
        labels: A :class:`~medseg.io.label_map.LabelMapping` (or ``["liver=5"]``...) applied to
            ``label.array`` here; ``None``: its values must already be LiTS 0, 1, 2.

    Returns:
        The measurements (module docstring) and ``labels``: the mapping used.

    Raises:
        DataError: Label values outside the mapping, or the scan's grid differs from the label map's (one
            line naming both files, with both geometries).
    """
    from medseg.io.label_map import LabelMapping, apply_label_mapping
    from medseg.io.orientation import align_to

    mapping = LabelMapping.parse(labels)
    used = label.meta.get("label_mapping") if labels is None else None
    label = label.with_array(apply_label_mapping(label.array, mapping, path=label.meta.get("path")))
    if image is not None:
        label = align_to(label, image)
    result = measure_volumes(
        label.array,
        spacing_mm=label.spacing_mm,
        affine=label.affine,
        image=None if image is None else image.array,
        connectivity=connectivity,
    )
    return {**result, "labels": used or mapping.to_json()}
