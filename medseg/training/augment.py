"""Patch augmentation: its settings (:class:`AugmentationConfig`, the ``augmentation`` section of a pipeline)
and the MONAI transforms that apply them.

The set and the default strengths follow nnU-Net's (Isensee et al., Nature Methods 18, 2021): rotation
and scaling (p 0.2, +-30 degrees, 0.7-1.4), Gaussian noise (p 0.1), multiplicative brightness (p 0.15),
contrast (p 0.15), gamma (p 0.3) and mirroring along every axis (p 0.5 each). ``flip_axes`` restricts the
mirroring: the liver pipelines leave out the left-right axis, because a left-right mirror turns the spleen
(liver-like HU, on the left) into a liver look-alike on the liver's side and takes away the network's
laterality cue (nnU-Net ships a no-mirroring trainer variant for such lateralised tasks, and likewise
skips mirroring at test time for it). Every transform is MONAI's; this module only chooses them and
their parameters:

* ``RandAffined`` (rotation + scaling; image bilinear with border padding, label nearest with zeros),
* ``RandGaussianNoised``, ``RandScaleIntensityd`` (brightness), ``RandScaleIntensityFixedMeand`` with
  ``preserve_range`` (contrast, as nnU-Net's ``ContrastAugmentationTransform``), ``RandAdjustContrastd``
  with ``retain_stats`` (gamma, as nnU-Net's ``GammaTransform``),
* ``RandFlipd`` per spatial axis.

Randomness is replayable: :func:`apply_augmentation` seeds every transform from the sample's own seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

from medseg.errors import ConfigError

__all__ = ["AugmentationConfig", "Augmenter", "affine_margin"]


@dataclass(frozen=True)
class AugmentationConfig:
    """Whether patches are augmented, and the probabilities and ranges (defaults: nnU-Net's).

    Attributes:
        enabled: ``False``: no augmentation at all (and nothing mirrored for test-time augmentation).
        flip_prob: Probability of mirroring, per spatial axis.
        flip_axes: Spatial axes that may be mirrored (0-based, on the canonical RAS grid: 0 left-right,
            1 posterior-anterior, 2 inferior-superior); ``None``: every axis (nnU-Net).
        affine_prob: Probability of a rotation + scaling of the patch.
        rotate_deg: Maximum rotation angle in degrees.
        rotate_all_axes: 3D only: rotate about every axis (``True``) or only in the axial plane
            (``False``); ``None`` rotates about every axis unless the grid spacing is anisotropic
            (largest / smallest > 3), as nnU-Net.
        scale_range: ``(min, max)`` zoom factor (> 1 magnifies).
        noise_prob, noise_std: Gaussian noise probability and maximum standard deviation.
        brightness_prob, brightness_range: Multiplicative brightness probability and factor range.
        contrast_prob, contrast_range: Contrast (scaling about the mean) probability and factor range.
        gamma_prob, gamma_range: Gamma probability and exponent range (applied on [0, 1]-rescaled values).
    """

    enabled: bool = True
    flip_prob: float = 0.5
    flip_axes: tuple[int, ...] | None = None
    affine_prob: float = 0.2
    rotate_deg: float = 30.0
    rotate_all_axes: bool | None = None
    scale_range: tuple[float, float] = (0.7, 1.4)
    noise_prob: float = 0.1
    noise_std: float = 0.1
    brightness_prob: float = 0.15
    brightness_range: tuple[float, float] = (0.75, 1.25)
    contrast_prob: float = 0.15
    contrast_range: tuple[float, float] = (0.75, 1.25)
    gamma_prob: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_prob") and not (isinstance(value, int | float) and 0.0 <= value <= 1.0):  # NaN too
                raise ConfigError(f"augmentation.{f.name} must be a probability in [0, 1], got {value!r}")
            if f.name.endswith("_range"):
                pair = tuple(float(v) for v in value) if isinstance(value, Sequence) else ()
                if len(pair) != 2 or not 0 < pair[0] <= pair[1] < math.inf:
                    raise ConfigError(f"augmentation.{f.name} must be (low, high) with 0 < low <= high, got {value!r}")
                object.__setattr__(self, f.name, pair)
        if not (0.0 <= self.rotate_deg <= 180.0):
            raise ConfigError(f"augmentation.rotate_deg must be in [0, 180], got {self.rotate_deg!r}")
        if self.flip_axes is not None:
            axes = tuple(self.flip_axes) if isinstance(self.flip_axes, list | tuple) else (None,)
            if not all(isinstance(a, int) and 0 <= a <= 2 for a in axes) or len(set(axes)) != len(axes):
                raise ConfigError(f"augmentation.flip_axes must be distinct axes among 0, 1, 2, got {self.flip_axes!r}")
            object.__setattr__(self, "flip_axes", axes)
        if not 0 <= self.noise_std < math.inf:
            raise ConfigError(f"augmentation.noise_std must be >= 0, got {self.noise_std!r}")

    def mirror_axes(self, spatial_dims: int) -> list[int]:
        """Spatial axes mirrored for ``spatial_dims``-D patches (``[]`` when disabled or ``flip_prob`` is 0):
        the flips of :class:`Augmenter`, and the axes test-time augmentation may mirror."""
        if not self.enabled or self.flip_prob == 0:
            return []
        axes = range(spatial_dims) if self.flip_axes is None else self.flip_axes
        return [a for a in axes if a < spatial_dims]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def affine_margin(config: AugmentationConfig) -> float:
    """How much larger than the patch the region read before a rotation + scaling must be, so that the
    output is filled with image data: ``(cos a + sin a) / min_zoom`` for the rotation angle ``a``
    (capped at 45 degrees, the worst case in a plane)."""
    angle = math.radians(min(config.rotate_deg, 45.0))
    return (math.cos(angle) + math.sin(angle)) / config.scale_range[0]


class Augmenter:
    """The MONAI transforms of one :class:`AugmentationConfig` for ``spatial_dims``-D patches.

    Call :meth:`spatial` on ``{"image": (C, *region), "label": (1, *region)}`` to rotate/scale the region
    and cut the ``patch_size`` centre, then :meth:`intensity_and_flips` on the patch.

    Args:
        config: Augmentation settings.
        spatial_dims: 2 or 3.
        patch_size: Output spatial size.
        spacing_mm: Spacing of the grid (decides in-plane-only rotation for anisotropic 3D data).
    """

    def __init__(self, config: AugmentationConfig, *, spatial_dims: int, patch_size: Sequence[int],
                 spacing_mm: Sequence[float] | None = None):
        from monai.transforms import (
            Compose,
            RandAdjustContrastd,
            RandAffined,
            RandFlipd,
            RandGaussianNoised,
            RandScaleIntensityd,
            RandScaleIntensityFixedMeand,
        )

        self.config = config
        angle = math.radians(config.rotate_deg)
        if spatial_dims == 2:
            rotate = (-angle, angle)
        else:
            all_axes = config.rotate_all_axes
            if all_axes is None:
                all_axes = spacing_mm is None or max(spacing_mm) / min(spacing_mm) <= 3.0
            rotate = [(-angle, angle) if all_axes else (0.0, 0.0)] * 2 + [(-angle, angle)]
        # MONAI scales the sampling grid: a grid factor g shows the image at zoom 1 / g
        grid_low, grid_high = 1.0 / config.scale_range[1], 1.0 / config.scale_range[0]
        self._affine = RandAffined(
            keys=("image", "label"), spatial_size=tuple(int(p) for p in patch_size), prob=1.0,
            rotate_range=rotate, scale_range=[(grid_low - 1.0, grid_high - 1.0)] * spatial_dims,
            mode=("bilinear", "nearest"), padding_mode=("border", "zeros"),
        )
        intensity = [
            RandGaussianNoised(keys="image", prob=config.noise_prob, std=config.noise_std),
            RandScaleIntensityd(keys="image", prob=config.brightness_prob,
                                factors=(config.brightness_range[0] - 1.0, config.brightness_range[1] - 1.0)),
            RandScaleIntensityFixedMeand(keys="image", prob=config.contrast_prob, preserve_range=True,
                                         factors=(config.contrast_range[0] - 1.0, config.contrast_range[1] - 1.0)),
            RandAdjustContrastd(keys="image", prob=config.gamma_prob, gamma=config.gamma_range, retain_stats=True),
        ]
        flips = [RandFlipd(keys=("image", "label"), prob=config.flip_prob, spatial_axis=a)
                 for a in config.mirror_axes(spatial_dims)]
        self._rest = Compose([*intensity, *flips])

    def spatial(self, sample: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
        """Rotate and scale about the region's centre and cut ``patch_size`` from it (always applied;
        the caller draws ``affine_prob``)."""
        self._affine.set_random_state(seed=seed)
        return _plain(self._affine(sample))

    def intensity_and_flips(self, sample: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
        """Noise, brightness, contrast, gamma (image only) and flips (image and label)."""
        self._rest.set_random_state(seed=seed)
        return _plain(self._rest(sample))


def _plain(sample: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """MetaTensors and arrays to plain contiguous torch tensors (cheaper to collate and send)."""
    out = {}
    for key, value in sample.items():
        tensor = value.as_tensor() if hasattr(value, "as_tensor") else torch.as_tensor(np.asarray(value))
        out[key] = tensor.contiguous()
    return out
