"""Model registry: a name -> builder table and one configuration format for every network.

A model configuration is a plain dict, saved in every checkpoint so inference can rebuild the network::

    {"name": "unet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3, "depth": 5, "base_filters": 32}

``name``, ``spatial_dims``, ``in_channels`` and ``out_channels`` are required; every other key is a
keyword argument of the builder. Unknown keys and invalid values raise :class:`~medseg.errors.ConfigError`
naming the key.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from medseg.errors import ConfigError

__all__ = ["available_models", "build_model", "count_parameters", "model_parameters", "register_model"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_REQUIRED = ("name", "spatial_dims", "in_channels", "out_channels")


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder ``fn(*, spatial_dims, in_channels, out_channels, **params)``."""

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return decorator


def available_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def model_parameters(name: str) -> dict[str, Any]:
    """The optional parameters of model ``name`` with their defaults."""
    if name not in _REGISTRY:
        raise ConfigError(f"model.name: unknown model {name!r}; available: {', '.join(available_models())}")
    signature = inspect.signature(_REGISTRY[name])
    return {k: p.default for k, p in signature.parameters.items() if k not in _REQUIRED}


def build_model(model_config: Mapping[str, Any]) -> nn.Module:
    """Build the network described by ``model_config`` (see the module docstring).

    Raises:
        ConfigError: A required key is missing, a key is unknown, or a value is invalid.
    """
    missing = [k for k in _REQUIRED if k not in model_config]
    if missing:
        raise ConfigError(f"model config lacks {', '.join(missing)} (required: {', '.join(_REQUIRED)})")
    config = dict(model_config)
    name = config.pop("name")
    allowed = model_parameters(name)
    unknown = sorted(set(config) - set(allowed) - set(_REQUIRED))
    if unknown:
        raise ConfigError(
            f"model: unknown key(s) {', '.join(unknown)} for {name!r}; valid: {', '.join(sorted(allowed))}"
        )
    if config["spatial_dims"] not in (2, 3):
        raise ConfigError(f"model.spatial_dims must be 2 or 3, got {config['spatial_dims']!r}")
    for key in ("in_channels", "out_channels"):
        if not isinstance(config[key], int) or isinstance(config[key], bool) or config[key] < 1:
            raise ConfigError(f"model.{key} must be a positive integer, got {config[key]!r}")
    return _REGISTRY[name](**config)


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
