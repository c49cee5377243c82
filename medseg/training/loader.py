"""Load a pipeline: find its YAML file, read it, apply the device profile and the ``--set`` overrides,
bind the sections to the schema (:mod:`medseg.training.config`) and check every rule
(:mod:`medseg.training.rules`). The resolution order is described in :mod:`medseg.training.config`.
"""

from __future__ import annotations

import copy
import importlib.resources
import os
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError
from medseg.runs.device import resolve_device
from medseg.training.binder import bind
from medseg.training.config import PipelineConfig
from medseg.training.overrides import apply_overrides, merge_profile
from medseg.training.rules import check_pipeline
from medseg.utils.yamlfile import read_yaml

__all__ = ["config_from_dict", "find_pipeline", "load_pipeline"]


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Older run folders and pipeline files nest augmentation fields under ``augmentation.params``."""
    section = data.get("augmentation")
    if isinstance(section, dict) and "params" in section:
        params = section["params"]
        if params is not None and not isinstance(params, dict):
            raise ConfigError(f"augmentation.params: expected a mapping, got {params!r}")
        rest = {k: v for k, v in section.items() if k != "params"}
        data = {**data, "augmentation": {**(params or {}), **rest}}
    return data


def config_from_dict(data: Any) -> PipelineConfig:
    """Bind and check a :class:`PipelineConfig` from a plain mapping (no profile is applied).

    Raises:
        ConfigError: Unknown key, wrong type, non-finite number or a value out of range, naming the key.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"a pipeline must be a mapping of sections, got {type(data).__name__}")
    config = bind(PipelineConfig, _upgrade(copy.deepcopy(data)), "")
    check_pipeline(config)
    return config


def find_pipeline(name_or_path: str | os.PathLike) -> Path:
    """The YAML file of a pipeline: a path to a ``.yaml``/``.yml`` file, or a name shipped with medseg."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text:
        path = Path(text)
        if not path.is_file():
            raise ConfigError("pipeline file not found", path=path)
        return path
    folder = importlib.resources.files("medseg.pipelines")
    candidate = folder / f"{text}.yaml"
    if not candidate.is_file():
        shipped = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
        raise ConfigError(f"unknown pipeline {text!r}; shipped pipelines: {', '.join(shipped)} (or give a .yaml path)")
    return Path(str(candidate))


def load_pipeline(
    name_or_path: str | os.PathLike,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    device: str | None = None,
) -> PipelineConfig:
    """Load, profile and override a pipeline (see the module docstring); returns the resolved config.

    Args:
        name_or_path: A shipped pipeline name (``"liver"``) or a path to a YAML file.
        overrides: ``"section.key=value"`` strings (``--set``).
        device: Force the device (``"cpu"``, ``"cuda"``); default: the config's ``device`` (``auto``).

    Raises:
        ConfigError: Unknown pipeline, unreadable YAML, unknown key, or invalid value.
    """
    path = find_pipeline(name_or_path)
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError("a pipeline file must be a mapping of sections", path=path)
    raw = apply_overrides(raw, overrides)
    config = config_from_dict(raw)  # checks everything, including the profiles' names
    resolved = str(resolve_device(device or config.device))  # the plain name the config stores
    kind = "cuda" if resolved.startswith("cuda") else "cpu"
    merged = apply_overrides(merge_profile(raw, config.profiles, kind), overrides)  # flags win over the profile
    merged["device"] = resolved
    merged["profiles"] = {}
    try:
        return config_from_dict(merged)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (after applying profiles.{kind})") from None
