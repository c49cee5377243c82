"""nnU-Net v2's preprocessing of one configuration, and its inverse, reproduced from ``plans.json``.

What ``nnUNetPredictor`` does to a CT file, step by step (``DefaultPreprocessor.run_case`` and
``export_prediction.convert_predicted_logits_to_segmentation_with_correct_shape``), and here:

1. read: SimpleITK's array is the file's voxel array with the axes reversed, ``(k, j, i)``, and the
   spacing reversed (no reorientation; ``NibabelIOWithReorient`` reorients to RAS first). medseg's
   :class:`~medseg.io.Volume` holds ``[i, j, k]`` in the file's order, so it is transposed, not
   reoriented;
2. ``transpose_forward`` (array and spacing);
3. crop to the bounding box of the non-zero voxels (holes filled: the same box);
4. normalise (``CTNormalization``: clip to ``percentile_00_5``..``percentile_99_5`` of the training
   foreground, subtract its mean, divide by ``max(std, 1e-8)``) *before* resampling;
5. resample to the configuration's spacing (:mod:`~medseg.interop.nnunet.resample`, order 3,
   separate z);
6. pad to at least one patch with zeros (half before, half after).

Back: crop the padding, resample the logits to the cropped shape (order 1, separate z with order 0),
argmax (or softmax for probabilities), paste into the uncropped grid (background outside), undo the
transposes. The sliding window in between is medseg's with nnU-Net's layout
(:mod:`~medseg.interop.nnunet.windows`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import nibabel.orientations as nio
import numpy as np
import torch

from medseg.errors import DataError
from medseg.interop.nnunet.resample import new_shape, resample
from medseg.io.orientation import CANONICAL_AXCODES, Reorientation, from_canonical
from medseg.io.volume import Volume

__all__ = ["NnUNetPlan", "NnUNetRecord"]

#: Readers whose array is the file's voxel array (reversed axes); the second reorients to RAS first.
_READERS = ("SimpleITKIO", "NibabelIO", "NibabelIOWithReorient")
_NORMALISATIONS = ("CTNormalization", "NoNormalization")


@dataclass(frozen=True)
class NnUNetPlan:
    """One nnU-Net v2 configuration's preprocessing (``plans.json``), in nnU-Net's array axis order.

    Attributes:
        configuration: The configuration's name (``3d_fullres``, ...).
        spacing: Target spacing of the transposed array (mm).
        patch_size: The sliding window, in the same order.
        transpose_forward, transpose_backward: nnU-Net's axis permutations.
        normalization: ``CTNormalization`` or ``NoNormalization``.
        intensity: Channel 0's ``foreground_intensity_properties_per_channel``.
        data_kwargs, logits_kwargs: ``order``, ``order_z``, ``force_separate_z`` of image and
            probability resampling.
        reorient: The reader reorients to RAS first (``NibabelIOWithReorient``).
        window_layout: The sliding-window layout (``"nnunet"``).
    """

    configuration: str
    spacing: tuple[float, ...]
    patch_size: tuple[int, ...]
    transpose_forward: tuple[int, ...]
    transpose_backward: tuple[int, ...]
    normalization: str
    intensity: Mapping[str, float]
    data_kwargs: Mapping[str, Any]
    logits_kwargs: Mapping[str, Any]
    reorient: bool = False
    window_layout: str = field(default="nnunet")

    @classmethod
    def from_plans(cls, plans: Mapping[str, Any], configuration: str, *, source: str | os.PathLike | None = None
                   ) -> NnUNetPlan:
        """Read a configuration of ``plans.json``.

        Raises:
            DataError: A 2D or cascade configuration, another reader or normalisation, missing keys (one
                line naming ``source``).
        """
        try:
            config = _configuration(plans, configuration, source)
            reader = str(plans.get("image_reader_writer", "SimpleITKIO"))
            if reader not in _READERS:
                raise DataError(f"plans image_reader_writer {reader!r} is not supported ({', '.join(_READERS)})",
                                path=source)
            schemes = list(config["normalization_schemes"])
            if len(schemes) != 1 or schemes[0] not in _NORMALISATIONS:
                raise DataError(f"plans normalization_schemes {schemes} not supported (one CT channel: "
                                f"{', '.join(_NORMALISATIONS)})", path=source)
            intensity = plans["foreground_intensity_properties_per_channel"]["0"]
            return cls(configuration=configuration, spacing=tuple(float(s) for s in config["spacing"]),
                       patch_size=tuple(int(p) for p in config["patch_size"]),
                       transpose_forward=tuple(int(a) for a in plans["transpose_forward"]),
                       transpose_backward=tuple(int(a) for a in plans["transpose_backward"]),
                       normalization=schemes[0],
                       intensity={k: float(intensity[k]) for k in ("mean", "std", "percentile_00_5",
                                                                     "percentile_99_5")},
                       data_kwargs=_resampling_kwargs(config.get("resampling_fn_data_kwargs"), order=3),
                       logits_kwargs=_resampling_kwargs(config.get("resampling_fn_probabilities_kwargs"), order=1),
                       reorient=reader == "NibabelIOWithReorient")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"plans configuration {configuration!r} lacks or mangles {exc}", path=source) from None

    # -- what medseg's predictor and scan checks read ------------------------------------------------
    @property
    def clip_hu(self) -> tuple[float, float]:
        """The training foreground's 0.5 and 99.5 percentiles (HU)."""
        return self.intensity["percentile_00_5"], self.intensity["percentile_99_5"]

    @property
    def target_spacing_mm(self) -> tuple[float, float, float]:
        """The target spacing in the file's axis order (``[i, j, k]``)."""
        sitk = [0.0] * 3
        for axis, source_axis in enumerate(self.transpose_forward):
            sitk[source_axis] = self.spacing[axis]
        return tuple(reversed(sitk))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (``run.json``, ensemble checks)."""
        return {"format": "nnU-Net v2", "configuration": self.configuration, "spacing": list(self.spacing),
                "patch_size": list(self.patch_size), "transpose_forward": list(self.transpose_forward),
                "normalization": self.normalization, "intensity": dict(self.intensity),
                "data_resampling": dict(self.data_kwargs), "logits_resampling": dict(self.logits_kwargs),
                "reorient": self.reorient}

    # -- forward --------------------------------------------------------------------------------------
    def prepare_scan(self, volume: Volume, *, air_threshold_hu: float | None = None
                     ) -> tuple[np.ndarray, NnUNetRecord, torch.Tensor | None]:
        """The network input of ``volume`` as nnU-Net computes it (steps 1-6 of the module doc).

        Returns:
            ``(image, record, body)``: float32 ``(A0, A1, A2)`` on nnU-Net's grid (padded to a patch),
            its :class:`NnUNetRecord`, and where the image is above ``air_threshold_hu`` (normalised the
            same way; ``None`` without a threshold).
        """
        array, reorientation = self._read(volume)
        spacing = [float(s) for s in reversed(_spacing(volume, reorientation))]
        array = array.transpose(self.transpose_forward)
        spacing = [spacing[a] for a in self.transpose_forward]
        bbox = _nonzero_box(array)
        cropped = array[bbox].astype(np.float32)
        image = self._normalise(cropped)
        shape = new_shape(cropped.shape, spacing, self.spacing)
        image = resample(image[None], shape, spacing=spacing, target_spacing=self.spacing, **self.data_kwargs)[0]
        pads = [max(0, p - n) for p, n in zip(self.patch_size, image.shape)]
        image = np.pad(image, [(p // 2, p - p // 2) for p in pads], constant_values=0.0)
        record = NnUNetRecord(plan=self, source_shape=tuple(volume.shape), reorientation=reorientation,
                              transposed_shape=tuple(array.shape), bbox=bbox, cropped_shape=tuple(cropped.shape),
                              spacing_before_mm=tuple(spacing), pads=tuple(pads),
                              resampled_shape=tuple(image.shape))
        body = None
        if air_threshold_hu is not None:
            threshold = float(self._normalise(np.array([air_threshold_hu], dtype=np.float32))[0])
            body = torch.from_numpy(image > threshold)
        return np.ascontiguousarray(image, dtype=np.float32), record, body

    def _read(self, volume: Volume) -> tuple[np.ndarray, Reorientation | None]:
        """nnU-Net's reader's array ``(k, j, i)`` (after RAS reorientation for ``NibabelIOWithReorient``)."""
        array = np.asarray(volume.array)
        if array.ndim != 3:
            raise DataError(f"expected a 3D scan, got shape {array.shape}", path=volume.meta.get("path"))
        reorientation = None
        if self.reorient:
            transform = nio.ornt_transform(nio.io_orientation(volume.affine), nio.axcodes2ornt(CANONICAL_AXCODES))
            array = nio.apply_orientation(array, transform)
            reorientation = Reorientation(transform=transform, source_shape=volume.shape, source_affine=volume.affine)
        return array.transpose(2, 1, 0), reorientation

    def _normalise(self, image: np.ndarray) -> np.ndarray:
        if self.normalization == "NoNormalization":
            return image.astype(np.float32)
        p = self.intensity
        image = image.astype(np.float32, copy=False)  # the caller's own copy: normalised in place
        np.clip(image, p["percentile_00_5"], p["percentile_99_5"], out=image)
        image -= p["mean"]
        image /= max(p["std"], 1e-8)
        return image


@dataclass(frozen=True)
class NnUNetRecord:
    """What :meth:`NnUNetPlan.prepare_scan` did to one scan, to map predictions back (nnU-Net's way).

    Attributes:
        plan: The plan it came from.
        source_shape: The scan's shape (file order).
        reorientation: RAS reorientation done first (``NibabelIOWithReorient``), else ``None``.
        transposed_shape: Shape after reading and ``transpose_forward`` (before cropping).
        bbox: The crop (slices of the transposed array).
        cropped_shape: Shape after cropping.
        spacing_before_mm: Spacing of the cropped array.
        pads: Zeros added per axis (half before) to reach one patch.
        resampled_shape: Shape of the network's grid (padding included).
    """

    plan: NnUNetPlan
    source_shape: tuple[int, ...]
    reorientation: Reorientation | None
    transposed_shape: tuple[int, ...]
    bbox: tuple[slice, ...]
    cropped_shape: tuple[int, ...]
    spacing_before_mm: tuple[float, ...]
    pads: tuple[int, ...]
    resampled_shape: tuple[int, ...]

    @property
    def spacing_after_mm(self) -> tuple[float, ...]:
        """Spacing of the network's grid."""
        return self.plan.spacing

    def _to_crop_grid(self, maps: torch.Tensor | np.ndarray) -> np.ndarray:
        """``(C, *resampled_shape)`` -> ``(C, *cropped_shape)``: padding removed, resampled as nnU-Net."""
        maps = torch.as_tensor(maps).float().numpy()
        if maps.ndim != 4 or tuple(maps.shape[1:]) != tuple(self.resampled_shape):
            raise ValueError(f"maps must be (C, {', '.join(map(str, self.resampled_shape))}), got {maps.shape}")
        inner = tuple(slice(p // 2, n - (p - p // 2)) for p, n in zip(self.pads, self.resampled_shape))
        maps = maps[(slice(None), *inner)]
        return resample(maps, self.cropped_shape, spacing=self.plan.spacing, target_spacing=self.spacing_before_mm,
                        **self.plan.logits_kwargs)

    def _to_scan(self, maps: np.ndarray, fill: Sequence[float]) -> np.ndarray:
        """``(C, *cropped_shape)`` -> ``(C, *source_shape)``: uncropped (``fill[c]`` outside), transposed back."""
        full = np.empty((maps.shape[0], *self.transposed_shape), dtype=maps.dtype)
        for c in range(maps.shape[0]):
            full[c] = fill[c]
        full[(slice(None), *self.bbox)] = maps
        full = full.transpose(0, *(a + 1 for a in self.plan.transpose_backward)).transpose(0, 3, 2, 1)
        if self.reorientation is not None:
            full = from_canonical(full, self.reorientation)
        return np.ascontiguousarray(full)

    def restore_argmax(self, logits: torch.Tensor | np.ndarray) -> np.ndarray:
        """uint8 labels on the scan's grid: logits resampled (order 1), argmax, uncropped, transposed back."""
        labels = _argmax_classes(self._to_crop_grid(logits))[None]
        return self._to_scan(labels, [0])[0]

    def restore_probabilities(self, logits: torch.Tensor | np.ndarray) -> np.ndarray:
        """float32 softmax probabilities ``(K, *source_shape)``: logits resampled first, then the softmax (as
        nnU-Net); background 1 outside the crop."""
        resampled = torch.from_numpy(self._to_crop_grid(logits))
        probabilities = torch.softmax(resampled, dim=0).numpy()
        return self._to_scan(probabilities, [1.0] + [0.0] * (probabilities.shape[0] - 1))

    def to_scan(self, maps: torch.Tensor | np.ndarray) -> np.ndarray:
        """Any ``(C, *resampled_shape)`` maps (e.g. probabilities) on the scan's grid, 0 outside the crop."""
        return self._to_scan(self._to_crop_grid(maps), [0.0] * int(maps.shape[0]))


def _configuration(plans: Mapping[str, Any], name: str, source) -> Mapping[str, Any]:
    configs = plans["configurations"]
    if name not in configs:
        raise DataError(f"plans has no configuration {name!r} (has {', '.join(configs)})", path=source)
    config = dict(configs[name])
    parent = config.get("inherits_from")
    if parent is not None:
        config = {**_configuration(plans, parent, source), **config}
    if config.get("previous_stage") is not None:
        raise DataError(f"configuration {name!r} is a cascade stage (needs the previous stage's segmentation); "
                        "not supported", path=source)
    if len(config["patch_size"]) != 3:
        raise DataError(f"configuration {name!r} is 2D; only 3D nnU-Net configurations are supported", path=source)
    return config


def _resampling_kwargs(kwargs: Mapping[str, Any] | None, *, order: int) -> dict[str, Any]:
    kwargs = dict(kwargs or {})
    return {"order": int(kwargs.get("order", order)), "order_z": int(kwargs.get("order_z", 0)),
            "force_separate_z": kwargs.get("force_separate_z")}


def _spacing(volume: Volume, reorientation: Reorientation | None) -> tuple[float, float, float]:
    """The scan's spacing along its array axes (after the reorientation, if any)."""
    spacing = np.asarray(volume.spacing_mm, dtype=float)
    if reorientation is None:
        return tuple(spacing)
    order = reorientation.transform[:, 0].astype(int)  # source axis a goes to canonical axis order[a]
    out = np.empty(3)
    out[order] = spacing
    return tuple(out)


def _argmax_classes(maps: np.ndarray) -> np.ndarray:
    """``np.argmax(maps, axis=0)`` as uint8 for ``(K, ...)`` maps (first maximum wins): a running maximum over
    the K classes, ~5x faster than numpy's strided reduction over a short leading axis."""
    best = maps[0].copy()
    labels = np.zeros(maps.shape[1:], dtype=np.uint8)
    for k in range(1, maps.shape[0]):
        np.copyto(labels, np.uint8(k), where=maps[k] > best)
        np.maximum(best, maps[k], out=best)
    return labels


def _nonzero_box(array: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of the non-zero voxels (filling holes, as nnU-Net does, leaves it unchanged); the whole
    array when none is non-zero."""
    nonzero = array != 0
    box = []
    for axis in range(array.ndim):
        hits = np.flatnonzero(nonzero.any(axis=tuple(a for a in range(array.ndim) if a != axis)))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1) if len(hits) else slice(0, array.shape[axis]))
    return tuple(box)
