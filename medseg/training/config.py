"""Pipeline configuration: frozen dataclasses loaded from YAML, with device profiles and ``--set`` overrides.

A pipeline file (``pipelines/liver.yaml``; every key is described in ``docs/pipelines.md``) has the
sections of :class:`PipelineConfig`. Unknown keys and values of the wrong type raise
:class:`~medseg.errors.ConfigError` naming the key and listing the valid ones.

Resolution order, later wins:

1. the YAML file (found by name in the installed ``medseg.pipelines`` package, or a path);
2. ``profiles.<device>``: partial sections applied when training runs on that device kind (``cpu`` or
   ``cuda``), e.g. a smaller network and patch on a CPU;
3. ``--set section.key=value`` overrides (values parsed as YAML, then type-checked).

The resolved config (profile applied, ``device`` resolved, ``profiles`` emptied) is what a run folder's
``config.yaml`` and every checkpoint hold; :func:`config_from_dict` reads it back.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.resources
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medseg.errors import ConfigError

__all__ = [
    "AugmentationConfig",
    "DataConfig",
    "OptimizerConfig",
    "PipelineConfig",
    "PreprocessingConfig",
    "SamplingConfig",
    "ScheduleConfig",
    "TrainingConfig",
    "ValidationConfig",
    "apply_overrides",
    "config_from_dict",
    "find_pipeline",
    "load_pipeline",
    "resolve_device",
]


@dataclass(frozen=True)
class DataConfig:
    """Where the data set is and what its labels mean."""

    root: str | None = None
    num_classes: int = 3
    labels: dict[str, str] = field(default_factory=lambda: {"0": "background", "1": "liver", "2": "tumor"})
    folds: int = 5
    fold_seed: int = 0
    cache_dir: str | None = None
    phantom_cases: int = 16
    phantom_size: str = "small"
    phantom_seed: int = 0


@dataclass(frozen=True)
class PreprocessingConfig:
    """How the preprocessing plan is derived (see :mod:`medseg.preprocessing`)."""

    normalization: str = "ct_zscore"
    target_spacing_mm: tuple[float, ...] | None = None
    window_hu: tuple[float, ...] = (-150.0, 250.0)
    workers: int | None = None


@dataclass(frozen=True)
class OptimizerConfig:
    """SGD with Nesterov momentum (nnU-Net: lr 0.01, momentum 0.99, weight decay 3e-5) or AdamW."""

    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.99
    nesterov: bool = True
    weight_decay: float = 3e-5
    betas: tuple[float, ...] = (0.9, 0.999)


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule over all iterations: ``poly`` (nnU-Net, power 0.9), ``cosine`` or ``constant``."""

    name: str = "poly"
    power: float = 0.9
    warmup_iterations: int = 0


@dataclass(frozen=True)
class TrainingConfig:
    """Loop settings. ``patch_size`` has 3 entries for a 3D model, 2 for a 2D one."""

    epochs: int = 1000
    iterations_per_epoch: int = 250
    batch_size: int = 2
    patch_size: tuple[int, ...] = (128, 128, 128)
    context_slices: int = 0
    grad_clip_norm: float | None = 12.0
    amp: bool = True
    seed: int = 0
    workers: int | None = None
    deterministic: bool = False
    deep_supervision_weights: str = "exp"


@dataclass(frozen=True)
class SamplingConfig:
    """Patch sampling: share of patches centred on a foreground voxel (nnU-Net: 1/3)."""

    foreground_fraction: float = 0.33


@dataclass(frozen=True)
class AugmentationConfig:
    """Data augmentation; ``params`` go to the patch loader (``medseg.training.data.make_loader``)."""

    enabled: bool = True
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ValidationConfig:
    """Validation by sliding-window inference on whole validation cases."""

    every_n_epochs: int = 1
    max_cases: int | None = None
    overlap: float = 0.5
    batch_size: int = 2
    metric: str = "mean_foreground_dice"


@dataclass(frozen=True)
class PipelineConfig:
    """A whole training pipeline. ``model`` is a ``{"name": ..., **params}`` mapping checked by the model
    registry; ``loss`` is a spec for :func:`medseg.losses.build_loss` (a name, ``{name, params}`` or a list
    of weighted terms); ``postprocessing`` is checked by ``medseg.inference.postprocess``."""

    name: str = "pipeline"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"name": "unet", "spatial_dims": 3})
    loss: Any = "dice_ce"
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    postprocessing: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    profiles: dict[str, Any] = field(default_factory=dict)

    @property
    def spatial_dims(self) -> int:
        return int(self.model.get("spatial_dims", 3))

    @property
    def in_channels(self) -> int:
        """Network input channels: 1, or ``2 k + 1`` stacked axial slices for a 2.5D model."""
        return 2 * self.training.context_slices + 1 if self.spatial_dims == 2 else 1

    def model_config(self) -> dict[str, Any]:
        """The ``model_config`` for :func:`medseg.models.build_model` (channels filled in)."""
        return {**self.model, "in_channels": self.in_channels, "out_channels": self.data.num_classes}

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, dicts, str, numbers), for YAML and checkpoints."""
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_OPEN_SECTIONS = ("model", "loss", "postprocessing", "profiles")  # checked elsewhere / free-form
_PROFILE_KINDS = ("cpu", "cuda")


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _check(value: Any, hint: Any, where: str) -> Any:
    """Return ``value`` converted to ``hint`` (lists -> tuples, int -> float) or raise ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: expected {_type_name(hint)}, got {value!r}")
    if hint is Any:
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        if len(args) > 1 and args[1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(_check(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        return tuple(_check(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): v for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    raise TypeError(f"unsupported config type {hint!r} at {where}")  # pragma: no cover - programming error


def _build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys raise ConfigError listing the valid ones."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'pipeline'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(map(str, data)) - set(names))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(prefix + k for k in unknown)}; "
            f"valid keys{' in ' + where if where else ''}: {', '.join(names)}"
        )
    values = {k: _check(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**values)


def _validate(config: PipelineConfig) -> None:
    """Cross-field checks with messages naming the key."""
    t, d, v = config.training, config.data, config.validation
    positive = {"training.epochs": t.epochs, "training.iterations_per_epoch": t.iterations_per_epoch,
                "training.batch_size": t.batch_size, "data.folds": d.folds, "data.num_classes": d.num_classes,
                "validation.every_n_epochs": v.every_n_epochs, "validation.batch_size": v.batch_size,
                "data.phantom_cases": d.phantom_cases}  # fmt: skip
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")
    if d.folds < 2:
        raise ConfigError(f"data.folds must be >= 2 for cross-validation, got {d.folds}")
    if "name" not in config.model:
        raise ConfigError("model.name is missing")
    if config.spatial_dims not in (2, 3):
        raise ConfigError(f"model.spatial_dims must be 2 or 3, got {config.model.get('spatial_dims')!r}")
    if len(t.patch_size) != config.spatial_dims or any(p < 1 for p in t.patch_size):
        raise ConfigError(
            f"training.patch_size must have {config.spatial_dims} positive entries for a "
            f"{config.spatial_dims}D model, got {list(t.patch_size)}"
        )
    if t.context_slices < 0 or (t.context_slices and config.spatial_dims == 3):
        raise ConfigError(f"training.context_slices must be >= 0 and is for 2D models only, got {t.context_slices}")
    if not 0.0 <= config.sampling.foreground_fraction <= 1.0:
        raise ConfigError(f"sampling.foreground_fraction must be in [0, 1], got {config.sampling.foreground_fraction}")
    if config.optimizer.name not in ("sgd", "adamw"):
        raise ConfigError(f"optimizer.name must be sgd or adamw, got {config.optimizer.name!r}")
    if not config.optimizer.lr > 0:
        raise ConfigError(f"optimizer.lr must be > 0, got {config.optimizer.lr}")
    if config.schedule.name not in ("poly", "cosine", "constant"):
        raise ConfigError(f"schedule.name must be poly, cosine or constant, got {config.schedule.name!r}")
    if t.deep_supervision_weights not in ("exp", "equal"):
        raise ConfigError(f"training.deep_supervision_weights must be exp or equal, got {t.deep_supervision_weights!r}")
    if not 0.0 <= v.overlap < 1.0:
        raise ConfigError(f"validation.overlap must be in [0, 1), got {v.overlap}")
    if v.metric not in ("mean_foreground_dice", "liver_dice", "tumor_dice"):
        raise ConfigError(f"validation.metric must be mean_foreground_dice, liver_dice or tumor_dice, got {v.metric!r}")
    if config.preprocessing.normalization not in ("ct_zscore", "window"):
        raise ConfigError(
            f"preprocessing.normalization must be ct_zscore or window, got {config.preprocessing.normalization!r}"
        )
    unknown_profiles = sorted(set(config.profiles) - set(_PROFILE_KINDS))
    if unknown_profiles:
        raise ConfigError(f"unknown profile(s) {', '.join(unknown_profiles)}; valid: {', '.join(_PROFILE_KINDS)}")
    if config.device != "auto" and not (config.device == "cpu" or config.device.startswith("cuda")):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {config.device!r}")
    # the open sections are checked by their owners (fail before training, with their own messages)
    from medseg.models import model_parameters

    allowed = set(model_parameters(config.model["name"])) | {"name", "spatial_dims"}
    unknown = sorted(set(config.model) - allowed)
    if unknown:
        raise ConfigError(f"unknown key(s) model.{', model.'.join(unknown)}; valid keys: {', '.join(sorted(allowed))}")
    from medseg.inference.postprocess import PostprocessConfig
    from medseg.losses import build_loss

    build_loss(config.loss)  # raises ConfigError naming the loss and the bad parameter
    from medseg.training.augment import AugmentConfig

    AugmentConfig.from_dict(config.augmentation.params)

    PostprocessConfig.from_dict(config.postprocessing)


def config_from_dict(data: dict[str, Any]) -> PipelineConfig:
    """Build and validate a :class:`PipelineConfig` from a plain mapping (no profile is applied)."""
    config = _build(PipelineConfig, copy.deepcopy(data), "")
    _validate(config)
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


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is available, else ``cpu``; other values are checked."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} requested but CUDA is not available (use device=cpu or auto)")
    return device


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. training.epochs=3")
    key, _, text = item.partition("=")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return [k for k in key.strip().split(".") if k], value


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of the raw config mapping with ``key.path=value`` overrides applied.

    Keys of closed sections are checked here (so the message names the ``--set`` item); values are
    type-checked when the config is built.
    """
    data = copy.deepcopy(data)
    sections = {f.name: f for f in dataclasses.fields(PipelineConfig)}
    for item in overrides:
        path, value = _parse_override(item)
        if not path or path[0] not in sections:
            section = path[0] if path else ""
            raise ConfigError(f"--set {item!r}: unknown section {section!r}; valid: {', '.join(sections)}")
        hint = typing.get_type_hints(PipelineConfig)[path[0]]
        if dataclasses.is_dataclass(hint) and len(path) >= 2:
            valid = [f.name for f in dataclasses.fields(hint)]
            if path[1] not in valid:
                raise ConfigError(f"--set {item!r}: unknown key {path[0]}.{path[1]}; valid keys: {', '.join(valid)}")
        node = data
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[path[-1]] = value
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


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
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {str(exc).splitlines()[0]}", path=path) from None
    if not isinstance(raw, dict):
        raise ConfigError("a pipeline file must be a mapping of sections", path=path)
    raw = apply_overrides(raw, overrides)
    config = config_from_dict(raw)  # validates everything, including the profiles' names
    resolved = resolve_device(device or config.device)
    kind = "cuda" if resolved.startswith("cuda") else "cpu"
    profile = config.profiles.get(kind) or {}
    if not isinstance(profile, dict):
        raise ConfigError(f"profiles.{kind}: expected a mapping of sections, got {profile!r}")
    if "profiles" in profile or "device" in profile:
        raise ConfigError(f"profiles.{kind} may not set device or profiles")
    merged = _merge(raw, profile)
    merged = apply_overrides(merged, overrides)  # flags win over the profile
    merged["device"] = resolved
    merged["profiles"] = {}
    try:
        return config_from_dict(merged)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (after applying profiles.{kind})") from None
