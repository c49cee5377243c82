"""The checks of a bound pipeline: value ranges and cross-field rules, one function per section.

:func:`check_pipeline` runs after :func:`medseg.training.binder.bind` (which has checked the types and
that every number is finite) and before anything reads data; every message names the key, the rule and
the value. ``docs/pipelines.md`` ("What is validated") lists the rules. Two sections are checked by their
owners, which the config binds to the same dataclasses: the post-processing
(:class:`~medseg.inference.postprocess.PostprocessConfig`) and the augmentation
(:class:`~medseg.training.augment.AugmentationConfig`) check their ranges when they are built, and the
network's shared keys are checked by :class:`medseg.models.settings.BackboneSettings` (here, through
:func:`medseg.models.model_settings`), and each builder checks its own limits (smallest depth, number of
deep-supervision heads, its own options) when the loop builds the model, also before any data is read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from medseg.errors import ConfigError

if TYPE_CHECKING:
    from medseg.training.config import PipelineConfig

__all__ = ["check_pipeline"]

_METRICS = {"mean_foreground_dice": 2, "liver_dice": 2, "tumor_dice": 3}  # metric -> smallest num_classes
_PER_CLASS_PARAMS = ("class_weights", "alpha")  # loss parameters holding one value per class when a list


def _at_least(key: str, value: int | float | None, low: int | float, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or value < low:
        raise ConfigError(f"{key} must be >= {low}{' or null' if optional else ''}, got {value!r}")


def _one_of(key: str, value: Any, allowed: tuple | list | dict) -> None:
    if value not in allowed:
        names = [str(a) for a in allowed]
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        raise ConfigError(f"{key} must be {listed}, got {value!r}")


def _check_data(config: PipelineConfig) -> None:
    from medseg.data.phantom import PHANTOM_SIZES
    from medseg.training.splits import GROUP_BY

    d = config.data
    _at_least("data.num_classes", d.num_classes, 2)
    _at_least("data.folds", d.folds, 2)
    _at_least("data.phantom_cases", d.phantom_cases, 1)
    for key in ("fold_seed", "phantom_seed"):
        _at_least(f"data.{key}", getattr(d, key), 0)
    _one_of("data.phantom_size", d.phantom_size, sorted(PHANTOM_SIZES))
    _one_of("data.group_by", d.group_by, list(GROUP_BY))
    if d.ignore_label is not None and (isinstance(d.ignore_label, bool) or not isinstance(d.ignore_label, int)
                                       or not d.num_classes <= d.ignore_label <= 255):
        raise ConfigError(f"data.ignore_label must be an integer in {d.num_classes}..255 (above the classes "
                          f"0..{d.num_classes - 1}) or null, got {d.ignore_label!r}")
    expected = [str(c) for c in range(d.num_classes)]
    if sorted(d.labels, key=lambda k: (len(k), k)) != expected:
        raise ConfigError(
            f"data.labels must name every class 0..{d.num_classes - 1} of data.num_classes={d.num_classes} "
            f"once, got keys {sorted(d.labels)}"
        )


def _check_preprocessing(config: PipelineConfig) -> None:
    p = config.preprocessing
    _one_of("preprocessing.normalization", p.normalization, ("ct_zscore", "window"))
    spacing = p.target_spacing_mm
    if spacing is not None and (len(spacing) != 3 or min(spacing) <= 0):
        raise ConfigError(f"preprocessing.target_spacing_mm must be 3 positive numbers (X, Y, Z) or null, "
                          f"got {list(spacing)}")  # fmt: skip
    if len(p.window_hu) != 2 or not p.window_hu[0] < p.window_hu[1]:
        raise ConfigError(f"preprocessing.window_hu must be [low, high] with low < high, got {list(p.window_hu)}")
    _at_least("preprocessing.workers", p.workers, 1, optional=True)


def _check_model(config: PipelineConfig) -> None:
    """Free-form options finite, then the one validator of the shared keys and the model's name and keys:
    :func:`medseg.models.model_settings` (:class:`~medseg.models.settings.BackboneSettings`). Channels: one
    input (``training.context_slices`` is checked with its section), ``data.num_classes`` outputs."""
    from medseg.models import model_settings

    m = config.model
    for key, value in m.options.items():
        _check_numbers(f"model.{key}", value)
    model_settings({**m.builder_params(), "in_channels": 1, "out_channels": config.data.num_classes})


def _check_loss(config: PipelineConfig) -> None:
    from medseg.losses import loss_parameters

    loss = config.loss
    terms = [(f"loss.terms[{i}]", t.name, t.params) for i, t in enumerate(loss.terms)]
    if loss.name != "compound" and loss.terms:
        raise ConfigError(f"loss.terms is for name: compound, not {loss.name!r}")
    if loss.name == "compound" and not loss.terms:
        raise ConfigError("loss.terms: a compound loss needs at least one term")
    for where, name, params in [("loss", loss.name, loss.params), *terms]:
        valid = loss_parameters(name)  # unknown loss name -> ConfigError listing the valid ones
        for key, value in params.items():
            if key == "spacing_mm":
                raise ConfigError(f"{where}.params.spacing_mm: distance losses take the preprocessing plan's "
                                  "spacing; remove it (set preprocessing.target_spacing_mm to choose the grid)")
            if key not in valid and name != "compound":
                raise ConfigError(f"{where}.params.{key}: unknown parameter of loss {name!r}; "
                                  f"valid: {', '.join(sorted(valid))}")  # fmt: skip
            _check_numbers(f"{where}.params.{key}", value)
            if key in _PER_CLASS_PARAMS and isinstance(value, (list, tuple)):
                _check_per_class(f"{where}.params.{key}", value, config.data.num_classes)
    for i, term in enumerate(loss.terms):
        _at_least(f"loss.terms[{i}].weight", term.weight, 0)


def _check_numbers(key: str, value: Any) -> None:
    """Every number in a free-form parameter is finite (``.inf``/``.nan`` refused)."""
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_numbers(f"{key}[{i}]", v)
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_numbers(f"{key}.{k}", v)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite number, got {value}")


def _check_per_class(key: str, values: list | tuple, num_classes: int) -> None:
    if len(values) != num_classes:
        raise ConfigError(f"{key} needs one value per class (data.num_classes={num_classes}), got {len(values)}: "
                          f"{list(values)}")  # fmt: skip
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ConfigError(f"{key} must hold numbers >= 0, got {list(values)}")


def _check_optimizer(config: PipelineConfig) -> None:
    o, s = config.optimizer, config.schedule
    _one_of("optimizer.name", o.name, ("sgd", "adamw"))
    if not o.lr > 0:
        raise ConfigError(f"optimizer.lr must be > 0, got {o.lr}")
    if not 0 <= o.momentum < 1:
        raise ConfigError(f"optimizer.momentum must be in [0, 1), got {o.momentum}")
    _at_least("optimizer.weight_decay", o.weight_decay, 0)
    if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
        raise ConfigError(f"optimizer.betas must be two numbers in [0, 1), got {list(o.betas)}")
    _one_of("schedule.name", s.name, ("poly", "cosine", "constant"))
    if not s.power > 0:
        raise ConfigError(f"schedule.power must be > 0, got {s.power}")
    _at_least("schedule.warmup_iterations", s.warmup_iterations, 0)


def _check_training(config: PipelineConfig) -> None:
    t, dims = config.training, config.spatial_dims
    for key in ("epochs", "iterations_per_epoch", "batch_size"):
        _at_least(f"training.{key}", getattr(t, key), 1)
    if len(t.patch_size) != dims or min(t.patch_size, default=0) < 1:
        raise ConfigError(f"training.patch_size must have {dims} positive entries for a {dims}D model, "
                          f"got {list(t.patch_size)}")  # fmt: skip
    if t.context_slices < 0 or (t.context_slices and dims == 3):
        raise ConfigError(f"training.context_slices must be >= 0 and is for 2D models only, got {t.context_slices}")
    if t.grad_clip_norm is not None and not t.grad_clip_norm > 0:
        raise ConfigError(f"training.grad_clip_norm must be > 0 or null (no clipping), got {t.grad_clip_norm}")
    _at_least("training.seed", t.seed, 0)
    _at_least("training.workers", t.workers, 0, optional=True)
    _one_of("training.deep_supervision_weights", t.deep_supervision_weights, ("exp", "equal"))
    _check_init(config)
    if not 0.0 <= config.sampling.foreground_fraction <= 1.0:
        raise ConfigError(f"sampling.foreground_fraction must be in [0, 1], got {config.sampling.foreground_fraction}")


def _check_init(config: PipelineConfig) -> None:
    """Fine-tuning keys (:mod:`medseg.training.finetune`); the model itself is read when the loop starts."""
    t = config.training
    if t.init_from is not None and not str(t.init_from).strip():
        raise ConfigError("training.init_from must be a run folder, checkpoint or nnU-Net results folder, or null")
    _at_least("training.init_fold", t.init_fold, 0)
    _one_of("training.init_plan", t.init_plan, ("model", "data"))
    _at_least("training.freeze_encoder_epochs", t.freeze_encoder_epochs, 0)
    if t.freeze_encoder_epochs and t.init_from is None:
        raise ConfigError(f"training.freeze_encoder_epochs={t.freeze_encoder_epochs} needs training.init_from "
                          "(a warm-up keeps pretrained encoder weights)")  # fmt: skip


def _check_validation(config: PipelineConfig) -> None:
    v = config.validation
    _at_least("validation.every_n_epochs", v.every_n_epochs, 1)
    _at_least("validation.batch_size", v.batch_size, 1)
    _at_least("validation.max_cases", v.max_cases, 1, optional=True)
    from medseg.inference.sliding_window import MAX_OVERLAP

    if not 0.0 <= v.overlap <= MAX_OVERLAP:
        raise ConfigError(f"validation.overlap must be in [0, {MAX_OVERLAP}], got {v.overlap}")
    _one_of("validation.metric", v.metric, tuple(_METRICS))
    if config.data.num_classes < _METRICS[v.metric]:
        raise ConfigError(f"validation.metric {v.metric} needs data.num_classes >= {_METRICS[v.metric]}, "
                          f"got {config.data.num_classes}")  # fmt: skip


def _check_device(config: PipelineConfig) -> None:
    from medseg.training.overrides import PROFILE_KINDS

    unknown = sorted(set(config.profiles) - set(PROFILE_KINDS))
    if unknown:
        raise ConfigError(f"unknown profile(s) {', '.join(unknown)}; valid: {', '.join(PROFILE_KINDS)}")
    d = config.device
    if d != "auto" and not (d == "cpu" or d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit())):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {d!r}")


_SECTIONS: tuple[Callable[[PipelineConfig], None], ...] = (
    _check_data, _check_preprocessing, _check_model, _check_loss, _check_optimizer, _check_training,
    _check_validation, _check_device,
)  # fmt: skip


def check_pipeline(config: PipelineConfig) -> None:
    """Check every section's ranges and the cross-field rules of a bound pipeline.

    Raises:
        ConfigError: The first rule broken, naming the key and the value.
    """
    for check in _SECTIONS:
        check(config)

