"""Augmentation settings: checks, mirrored axes, the margin read before a rotation + scaling."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import ConfigError
from medseg.training.augment import AugmentationConfig, affine_margin


def test_affine_margin_formula():
    assert affine_margin(AugmentationConfig(rotate_deg=0.0, scale_range=(1.0, 1.0))) == pytest.approx(1.0)
    assert affine_margin(AugmentationConfig(rotate_deg=30.0, scale_range=(0.7, 1.4))) == pytest.approx(
        (np.cos(np.pi / 6) + np.sin(np.pi / 6)) / 0.7)
    assert affine_margin(AugmentationConfig(rotate_deg=90.0, scale_range=(1.0, 1.0))) == pytest.approx(np.sqrt(2))


def test_mirror_axes_follow_the_settings():
    assert AugmentationConfig().mirror_axes(3) == [0, 1, 2]  # nnU-Net: every axis
    assert AugmentationConfig().mirror_axes(2) == [0, 1]
    assert AugmentationConfig(flip_axes=[1, 2]).mirror_axes(3) == [1, 2]
    assert AugmentationConfig(flip_axes=[1, 2]).mirror_axes(2) == [1]  # axis 2 is not spatial in 2D
    assert AugmentationConfig(flip_prob=0.0).mirror_axes(3) == []
    assert AugmentationConfig(enabled=False).mirror_axes(3) == []


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"flip_prob": 1.5}, r"augmentation\.flip_prob must be a probability in \[0, 1\], got 1\.5"),
    ({"gamma_prob": float("nan")}, r"augmentation\.gamma_prob must be a probability"),
    ({"scale_range": (1.4, 0.7)}, r"augmentation\.scale_range must be \(low, high\) with 0 < low <= high"),
    ({"rotate_deg": 200.0}, r"augmentation\.rotate_deg must be in \[0, 180\], got 200\.0"),
    ({"flip_axes": [0, 0]}, r"augmentation\.flip_axes must be distinct axes among 0, 1, 2"),
    ({"flip_axes": [3]}, r"augmentation\.flip_axes must be distinct axes"),
    ({"noise_std": -0.1}, r"augmentation\.noise_std must be >= 0"),
])
def test_bad_settings_name_the_key(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AugmentationConfig(**kwargs)


def test_to_dict_is_plain_json():
    data = AugmentationConfig(flip_axes=(1, 2)).to_dict()
    assert data["flip_axes"] == [1, 2] and data["scale_range"] == [0.7, 1.4] and data["enabled"] is True
    assert AugmentationConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}) == \
        AugmentationConfig(flip_axes=(1, 2))
