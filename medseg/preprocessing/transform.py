"""One scan in, one network-ready array out, and the exact way back to the scan's voxel grid.

``preprocess_image`` reorients to canonical R, A, S (:func:`medseg.io.to_canonical`), normalises the
intensities and resamples to the plan's target spacing (:func:`resample_array`, grid convention
``align_corners=False``: the field of view is kept). The :class:`PreprocessRecord` it returns is all
inference needs: ``restore_to_scan`` resamples predictions back to the canonical shape with the inverse
grid map and undoes the reorientation (:func:`medseg.io.from_canonical`), so the result overlays the
original scan voxel for voxel, in the file's own axis order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medseg.errors import DataError
from medseg.io.orientation import Reorientation, from_canonical, to_canonical
from medseg.io.volume import Volume
from medseg.preprocessing.intensity import normalize_intensity
from medseg.preprocessing.plan import PreprocessingPlan
from medseg.preprocessing.resample import grid_affine, resample_array, resampled_shape

__all__ = ["PreprocessRecord", "preprocess_image", "preprocess_label", "restore_labels", "restore_to_scan"]


@dataclass(frozen=True)
class PreprocessRecord:
    """What :func:`preprocess_image` did to one scan, enough to map predictions back.

    Attributes:
        reorientation: Flip/transpose from the source voxel order to canonical R, A, S.
        canonical_shape: Spatial shape after reorientation, before resampling.
        canonical_affine: ``(4, 4)`` affine of the canonical grid (RAS+ mm).
        resampled_shape: Spatial shape of the preprocessed array.
        resampled_affine: ``(4, 4)`` affine of the preprocessed grid.
        spacing_before_mm: Canonical spacing before resampling.
        spacing_after_mm: Spacing of the preprocessed grid (``canonical_shape * spacing_before /
            resampled_shape``; equals the plan's target spacing up to rounding of the shape).
    """

    reorientation: Reorientation
    canonical_shape: tuple[int, int, int]
    canonical_affine: np.ndarray
    resampled_shape: tuple[int, int, int]
    resampled_affine: np.ndarray
    spacing_before_mm: tuple[float, float, float]
    spacing_after_mm: tuple[float, float, float]

    @classmethod
    def for_grid(cls, reorientation: Reorientation, canonical_shape, canonical_affine: np.ndarray, *,
                 target_spacing_mm) -> PreprocessRecord:
        """The record of resampling a canonical grid to ``target_spacing_mm`` (the one place its fields are
        derived: :func:`preprocess_image` and :func:`medseg.inference.prepare.prepare_scan` both use it).

        Args:
            reorientation: The source -> canonical flip/transpose.
            canonical_shape: ``(X, Y, Z)`` of the canonical grid.
            canonical_affine: ``(4, 4)`` affine of the canonical grid; its column norms are the spacing.
            target_spacing_mm: The plan's spacing; the shape is rounded as :func:`resampled_shape` does.
        """
        shape = tuple(int(n) for n in canonical_shape)
        spacing = tuple(float(s) for s in np.linalg.norm(canonical_affine[:3, :3], axis=0))
        out_shape = resampled_shape(shape, spacing_mm=spacing, target_spacing_mm=target_spacing_mm)
        return cls(
            reorientation=reorientation,
            canonical_shape=shape,
            canonical_affine=canonical_affine,
            resampled_shape=out_shape,
            resampled_affine=grid_affine(canonical_affine, shape, out_shape),
            spacing_before_mm=spacing,
            spacing_after_mm=tuple(float(n * s / m) for n, s, m in zip(shape, spacing, out_shape)),
        )

    @property
    def source_shape(self) -> tuple[int, int, int]:
        """Spatial shape of the original scan (file voxel order)."""
        return tuple(self.reorientation.source_shape)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; inverse of :meth:`from_dict`."""
        return {
            "source_shape": list(self.reorientation.source_shape),
            "source_affine": np.asarray(self.reorientation.source_affine).tolist(),
            "reorientation_transform": np.asarray(self.reorientation.transform).tolist(),
            "canonical_shape": list(self.canonical_shape),
            "canonical_affine": np.asarray(self.canonical_affine).tolist(),
            "resampled_shape": list(self.resampled_shape),
            "resampled_affine": np.asarray(self.resampled_affine).tolist(),
            "spacing_before_mm": list(self.spacing_before_mm),
            "spacing_after_mm": list(self.spacing_after_mm),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessRecord:
        """Rebuild a record from :meth:`to_dict` output."""
        try:
            reorientation = Reorientation(
                transform=np.asarray(data["reorientation_transform"], dtype=float),
                source_shape=tuple(int(s) for s in data["source_shape"]),
                source_affine=np.asarray(data["source_affine"], dtype=float),
            )
            return cls(
                reorientation=reorientation,
                canonical_shape=tuple(int(s) for s in data["canonical_shape"]),
                canonical_affine=np.asarray(data["canonical_affine"], dtype=float),
                resampled_shape=tuple(int(s) for s in data["resampled_shape"]),
                resampled_affine=np.asarray(data["resampled_affine"], dtype=float),
                spacing_before_mm=tuple(float(s) for s in data["spacing_before_mm"]),
                spacing_after_mm=tuple(float(s) for s in data["spacing_after_mm"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"invalid preprocessing record: {exc}") from None


def preprocess_image(image: Volume, plan: PreprocessingPlan) -> tuple[np.ndarray, PreprocessRecord]:
    """Reorient, normalise and resample a CT scan as ``plan`` says.

    Args:
        image: The scan (HU), any storage orientation.
        plan: Target spacing and intensity normalisation.

    Returns:
        ``(array, record)``: float32 ``(X, Y, Z)`` in canonical R, A, S order at the target spacing, and
        the :class:`PreprocessRecord` that inverts the geometry.
    """
    if image.array.ndim != 3:
        raise DataError(f"expected a 3D image, got shape {image.shape}", path=image.meta.get("path"))
    canonical, reorientation = to_canonical(image)
    record = PreprocessRecord.for_grid(reorientation, canonical.shape, canonical.affine,
                                       target_spacing_mm=plan.target_spacing_mm)
    normalized = normalize_intensity(torch.from_numpy(canonical.array), plan)
    array = resample_array(normalized, out_shape=record.resampled_shape, mode="trilinear").numpy()
    return array, record


def preprocess_label(label: Volume, record: PreprocessRecord) -> np.ndarray:
    """Put a label map on the preprocessed grid of its scan (nearest neighbour).

    Args:
        label: Label map on the same voxel grid as the image that produced ``record``.
        record: From :func:`preprocess_image` of that image.

    Returns:
        uint8 ``(X, Y, Z)`` with ``record.resampled_shape``.
    """
    if label.shape != record.source_shape:
        raise DataError(f"label shape {label.shape} differs from the scan's {record.source_shape}",
                        path=label.meta.get("path"))
    values = np.asarray(label.array)
    if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        raise DataError("label map has non-integer values", path=label.meta.get("path"))
    if values.size and (values.min() < 0 or values.max() > 255):
        raise DataError(f"label values must lie in 0..255, got {values.min()}..{values.max()}",
                        path=label.meta.get("path"))
    canonical, _ = to_canonical(label.with_array(values.astype(np.uint8)))
    return resample_array(canonical.array, out_shape=record.resampled_shape, mode="nearest")


def _check_preprocessed_shape(array: np.ndarray | torch.Tensor, record: PreprocessRecord, what: str) -> None:
    if tuple(array.shape[-3:]) != tuple(record.resampled_shape):
        raise ValueError(f"{what} spatial shape {tuple(array.shape[-3:])} differs from the preprocessed "
                         f"shape {record.resampled_shape} in the record")


def restore_to_scan(array: np.ndarray | torch.Tensor, record: PreprocessRecord) -> np.ndarray:
    """Map per-class maps from the preprocessed grid back to the original scan's voxel grid.

    Args:
        array: ``(C, X, Y, Z)`` float probabilities or logits on the preprocessed grid (numpy, or torch on
            any device: the resampling runs there).
        record: The scan's :class:`PreprocessRecord`.

    Returns:
        float32 numpy ``(C, X0, Y0, Z0)`` in the source file's voxel order (``record.source_shape``);
        take ``argmax(axis=0)`` for labels.
    """
    if array.ndim != 4:
        raise ValueError(f"array must be (C, X, Y, Z), got shape {tuple(array.shape)}")
    _check_preprocessed_shape(array, record, "array")
    if isinstance(array, np.ndarray) and array.dtype != np.float64:
        array = array.astype(np.float32, copy=False)
    elif isinstance(array, torch.Tensor) and array.dtype != torch.float64:
        array = array.float()
    canonical = resample_array(array, out_shape=record.canonical_shape, mode="trilinear")
    if isinstance(canonical, torch.Tensor):
        canonical = canonical.detach().cpu().numpy()
    return from_canonical(canonical.astype(np.float32, copy=False), record.reorientation)


def restore_labels(labels: np.ndarray | torch.Tensor, record: PreprocessRecord) -> np.ndarray:
    """Map a label map ``(X, Y, Z)`` from the preprocessed grid back to the scan's grid (nearest).

    Returns:
        uint8 ``(X0, Y0, Z0)`` in the source file's voxel order.
    """
    if labels.ndim != 3:
        raise ValueError(f"labels must be (X, Y, Z), got shape {tuple(labels.shape)}")
    _check_preprocessed_shape(labels, record, "labels")
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    canonical = resample_array(np.asarray(labels).astype(np.uint8), out_shape=record.canonical_shape, mode="nearest")
    return from_canonical(canonical, record.reorientation)
