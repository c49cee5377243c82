"""Model registry: a name -> builder table and one configuration format for every network.

A model configuration is a plain dict, saved in every checkpoint so inference can rebuild the network::

    {"name": "unet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3, "depth": 5, "base_filters": 32}

``name``, ``spatial_dims``, ``in_channels`` and ``out_channels`` are required. The shared keys (the fields
of :class:`~medseg.models.settings.BackboneSettings`) become one settings object, validated once; the other
keys are the builder's own keyword options. A builder is ``fn(settings, *, **own_options)`` and registers
the defaults of the shared keys that differ for it (e.g. ``depth=6``). Unknown keys and invalid values
raise :class:`~medseg.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from medseg.errors import ConfigError
from medseg.models.settings import SETTINGS_KEYS, BackboneSettings

__all__ = [
    "available_models",
    "build_model",
    "count_parameters",
    "model_parameters",
    "model_settings",
    "register_model",
]

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], dict[str, Any], int]] = {}
_REQUIRED = ("name", "spatial_dims", "in_channels", "out_channels")
_SETTINGS_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(BackboneSettings) if f.default is not dataclasses.MISSING
}


def register_model(
    name: str, *, min_depth: int = 1, **defaults: Any
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder ``fn(settings, **own_options)`` as ``name``.

    Args:
        name: The ``model.name``.
        min_depth: Smallest ``depth`` the architecture takes (checked before the other keys).
        **defaults: Defaults of shared keys that differ from :class:`BackboneSettings`' (e.g. ``depth=6``).
    """
    unknown = sorted(set(defaults) - set(_SETTINGS_DEFAULTS))
    if unknown:
        raise ValueError(f"register_model({name!r}): {', '.join(unknown)} not a backbone setting")

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = (fn, {**_SETTINGS_DEFAULTS, **defaults}, min_depth)
        return fn

    return decorator


def available_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def _entry(name: str) -> tuple[Callable[..., nn.Module], dict[str, Any], int]:
    if name not in _REGISTRY:
        raise ConfigError(f"model.name: unknown model {name!r}; available: {', '.join(available_models())}")
    return _REGISTRY[name]


def _own_options(builder: Callable[..., nn.Module]) -> dict[str, Any]:
    """The builder's keyword options with their defaults (its first parameter is the settings)."""
    parameters = list(inspect.signature(builder).parameters.values())[1:]
    return {p.name: p.default for p in parameters}


def model_parameters(name: str) -> dict[str, Any]:
    """The optional parameters of model ``name`` with their defaults: shared keys first, then its own."""
    builder, defaults, _ = _entry(name)
    return {**defaults, **_own_options(builder)}


def model_settings(model_config: Mapping[str, Any]) -> tuple[BackboneSettings, dict[str, Any]]:
    """The validated settings of ``model_config`` and the builder's own options (see the module docstring).

    Raises:
        ConfigError: A required key is missing, a key is unknown, or a shared value is invalid.
    """
    missing = [k for k in _REQUIRED if k not in model_config]
    if missing:
        raise ConfigError(f"model config lacks {', '.join(missing)} (required: {', '.join(_REQUIRED)})")
    config = dict(model_config)
    name = config.pop("name")
    builder, defaults, min_depth = _entry(name)
    allowed = {**defaults, **_own_options(builder)}
    unknown = sorted(set(config) - set(allowed) - set(_REQUIRED))
    if unknown:
        raise ConfigError(
            f"model: unknown key(s) {', '.join(unknown)} for {name!r}; valid: {', '.join(sorted(allowed))}"
        )
    depth = config.get("depth", defaults["depth"])
    if isinstance(depth, int) and not isinstance(depth, bool) and depth < min_depth:
        raise ConfigError(f"model.depth must be an integer >= {min_depth} for {name}, got {depth}")
    settings = BackboneSettings(**{**defaults, **{k: v for k, v in config.items() if k in SETTINGS_KEYS}})
    return settings, {k: v for k, v in config.items() if k not in SETTINGS_KEYS}


def build_model(model_config: Mapping[str, Any]) -> nn.Module:
    """Build the network described by ``model_config`` (see the module docstring).

    Raises:
        ConfigError: A required key is missing, a key is unknown, or a value is invalid.
    """
    settings, options = model_settings(model_config)
    return _REGISTRY[model_config["name"]][0](settings, **options)


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
