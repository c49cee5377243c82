"""The registered U-Net variants (``unet``, ``resunet``, ``attention_unet``) and their validation."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from torch import nn

from medseg.errors import ConfigError
from medseg.models.registry import register_model
from medseg.models.unet import NORMS, SegmentationUNet

__all__ = ["attention_unet", "resunet", "unet"]


def _validate(p: dict) -> None:
    """Check values and raise :class:`ConfigError` naming the key (MONAI's own errors are less specific)."""
    dims, depth = p["spatial_dims"], p["depth"]
    if not isinstance(depth, int) or depth < 3:
        raise ConfigError(f"model.depth must be an integer >= 3, got {depth!r}")
    if not isinstance(p["base_filters"], int) or p["base_filters"] < 1:
        raise ConfigError(f"model.base_filters must be a positive integer, got {p['base_filters']!r}")
    if p["norm"] not in NORMS:
        raise ConfigError(f"model.norm must be one of {', '.join(NORMS)}, got {p['norm']!r}")
    if p["norm"] == "group" and p["base_filters"] % 8:
        raise ConfigError(f"model.base_filters must be a multiple of 8 for group norm, got {p['base_filters']}")
    if not isinstance(p["kernel_size"], int) or p["kernel_size"] < 1 or p["kernel_size"] % 2 == 0:
        raise ConfigError(f"model.kernel_size must be an odd positive integer, got {p['kernel_size']!r}")
    if not 0.0 <= float(p["dropout"]) < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {p['dropout']!r}")
    strides = p["strides"]
    if strides is not None:
        if len(strides) != depth:
            raise ConfigError(f"model.strides needs {depth} entries (one per level of model.depth={depth}), got "
                              f"{len(strides)}; give {depth} or set model.strides=null for the default")
        for s in strides:
            if not isinstance(s, int) and (not isinstance(s, Sequence) or len(s) != dims):
                raise ConfigError(f"model.strides entries must be an int or {dims} ints, got {s!r}")
    heads = p["deep_supervision_heads"]
    if heads is not None and not 1 <= heads <= depth - 2:
        raise ConfigError(f"model.deep_supervision_heads must be in 1..{depth - 2} for depth {depth}, got {heads}")


def _variant(
    variant: str,
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    depth: int = 5,
    base_filters: int = 32,
    max_filters: int | None = None,
    norm: str = "instance",
    kernel_size: int = 3,
    strides: Sequence | None = None,
    deep_supervision: bool = False,
    deep_supervision_heads: int | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """Validate the configuration and build :class:`SegmentationUNet` of ``variant``.

    Many parameters: the registry's keyword contract: each is a `model.*` pipeline key, checked by name.
    """
    params = dict(locals())
    del params["variant"]
    _validate(params)
    return SegmentationUNet(variant=variant, **params)


def _registered(name: str, variant: str, doc: str) -> Callable[..., nn.Module]:
    """Register the builder of ``variant`` as ``name``; its signature (read by ``model_parameters``) is
    ``_variant``'s keyword parameters."""
    builder = functools.partial(_variant, variant)
    builder.__doc__ = doc
    return register_model(name)(builder)


unet = _registered(
    "unet", "plain", "Plain U-Net (Ronneberger et al. 2015; 3D: Cicek et al. 2016); see SegmentationUNet."
)
resunet = _registered(
    "resunet", "residual", "Residual-encoder U-Net (He et al. 2016 blocks; Isensee et al. 2024); see SegmentationUNet."
)
attention_unet = _registered(
    "attention_unet", "attention", "Attention U-Net (Oktay et al. 2018); see SegmentationUNet."
)
