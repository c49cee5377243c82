"""``--set section.key=value`` overrides and device profiles, applied to the raw pipeline mapping.

Both work on the plain mapping read from YAML, before it is bound (:mod:`medseg.training.binder`), so a
value given on the command line is checked exactly as the same value in the file. Keys of typed sections
are checked here already, so the message names the ``--set`` item.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from typing import Any

from medseg.errors import ConfigError

__all__ = ["PROFILE_KINDS", "apply_overrides", "merge_profile", "parse_override"]

PROFILE_KINDS = ("cpu", "cuda")
_LEGACY_KEYS = {"augmentation": ("params",)}  # older files nest the augmentation fields under params


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"training.epochs=3"`` -> ``(["training", "epochs"], 3)``; the value is parsed as YAML (a string
    when it is not valid YAML), with the same limits as a pipeline file."""
    from medseg.utils.yamlfile import parse_yaml

    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. training.epochs=3")
    key, _, text = item.partition("=")
    try:
        value = parse_yaml(text) if text.strip() else None
    except ConfigError as exc:
        if "invalid YAML" not in str(exc):
            raise ConfigError(f"--set {item!r}: {exc}") from None
        value = text
    return [k for k in key.strip().split(".") if k], value


def _extra_keys(section: str) -> set[str]:
    """Keys a typed section takes besides its fields: legacy ones, and for ``model`` the parameters only
    some registered models have (bound into ``ModelConfig.options``)."""
    extra = set(_LEGACY_KEYS.get(section, ()))
    if section == "model":
        from medseg.models import available_models, model_parameters

        extra |= {k for name in available_models() for k in model_parameters(name)}
    return extra


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of the raw config mapping with ``key.path=value`` overrides applied.

    Raises:
        ConfigError: An item without ``=``, an unknown section, or an unknown key of a typed section.
    """
    from medseg.training.config import PipelineConfig

    data = copy.deepcopy(data)
    hints = typing.get_type_hints(PipelineConfig)
    for item in overrides:
        path, value = parse_override(item)
        for leaf_path, leaf in _leaves(item, path, value, hints):
            _set_one(data, item, leaf_path, leaf, hints)
    return data


def _leaves(item: str, path: list[str], value: Any, hints: dict) -> list[tuple[list[str], Any]]:
    """``--set training={epochs: 2}`` as ``training.epochs=2``: a mapping given to a section is merged key by
    key, never replaces the section (which would drop the rest of it, a device profile's values included).
    A key's own mapping value (``loss={name: dice_focal, params: {gamma: 1.5}}``) replaces that key's value.

    Raises:
        ConfigError: An empty mapping (sets nothing), or a typed section given a number, list, boolean or
            null, unless the section has shorthands of its own (its ``_coerce``: ``loss=dice_ce``,
            ``loss=[{name: dice}, {name: ce}]``), which are checked when bound.
    """
    section = len(path) == 1 and path[0] in hints and dataclasses.is_dataclass(hints[path[0]])
    if not section:
        return [(path, value)]
    if isinstance(value, dict):
        if not value:
            raise ConfigError(f"--set {item!r}: an empty mapping sets nothing; use section.key=value")
        fields = {f.name for f in dataclasses.fields(hints[path[0]])}
        if hasattr(hints[path[0]], "_coerce") and not set(map(str, value)) <= fields:
            return [(path, value)]  # the section's own shorthand (loss={name: boundary, weight: 0.5}), bound whole
        return [([*path, str(key)], sub) for key, sub in value.items()]
    if not (isinstance(value, str) or hasattr(hints[path[0]], "_coerce")):  # a section's own shorthand
        raise ConfigError(f"--set {item!r}: {path[0]} is a section; set its keys ({path[0]}.key=value or "
                          f"{path[0]}={{key: value}})")
    return [(path, value)]


def _set_one(data: dict[str, Any], item: str, path: list[str], value: Any, hints: dict) -> None:
    """Set one ``path=value`` in ``data``, checking the section and the key of a typed section."""
    if not path or path[0] not in hints:
        section = path[0] if path else ""
        raise ConfigError(f"--set {item!r}: unknown section {section!r}; valid: {', '.join(hints)}")
    hint = hints[path[0]]
    if dataclasses.is_dataclass(hint) and len(path) >= 2:
        valid = [f.name for f in dataclasses.fields(hint)]
        if path[1] not in valid and path[1] not in _extra_keys(path[0]):
            raise ConfigError(f"--set {item!r}: unknown key {path[0]}.{path[1]}; valid keys: {', '.join(valid)}")
    node = data
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def merge_profile(raw: dict[str, Any], profiles: dict[str, Any], kind: str) -> dict[str, Any]:
    """``raw`` with the sections of ``profiles[kind]`` merged in (mappings merged key by key).

    Raises:
        ConfigError: The profile is not a mapping of sections, or sets ``device`` or ``profiles``.
    """
    profile = profiles.get(kind) or {}
    if not isinstance(profile, dict):
        raise ConfigError(f"profiles.{kind}: expected a mapping of sections, got {profile!r}")
    if "profiles" in profile or "device" in profile:
        raise ConfigError(f"profiles.{kind} may not set device or profiles")
    return _merge(raw, profile)
