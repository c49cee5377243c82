"""Pipeline configuration schema: one frozen dataclass per section (loaded by :mod:`medseg.training.loader`).

A pipeline file (``pipelines/liver.yaml``; every key is described in ``docs/pipelines.md``) has the
sections of :class:`PipelineConfig`, every one of them typed: the model (:class:`ModelConfig`), the loss
(:class:`LossConfig`), the augmentation (:class:`~medseg.training.augment.AugmentationConfig`) and the
post-processing (:class:`~medseg.inference.postprocess.PostprocessConfig`) included. The values are bound
by :func:`medseg.training.binder.bind` (types, finiteness, unknown keys) and checked by
:func:`medseg.training.rules.check_pipeline` (ranges, cross-field rules): both raise
:class:`~medseg.errors.ConfigError` naming the key, before any data is read.

Resolution order, later wins:

1. the YAML file (found by name in the installed ``medseg.pipelines`` package, or a path), read with
   :func:`medseg.utils.yamlfile.read_yaml` (no alias bombs, no absurd nesting, UTF-8 only);
2. ``profiles.<device>``: partial sections applied when training runs on that device kind (``cpu`` or
   ``cuda``), e.g. a smaller network and patch on a CPU;
3. ``--set section.key=value`` overrides (values parsed as YAML, then bound like the file's).

The resolved config (profile applied, ``device`` resolved, ``profiles`` emptied) is what a run folder's
``config.yaml`` and every checkpoint hold; :func:`medseg.training.loader.config_from_dict` reads it back.
This module is the schema alone: finding, reading, profiling and overriding a pipeline file live in
:mod:`medseg.training.loader`, shorthand ``--set`` handling in :mod:`medseg.training.overrides`, the range
and cross-field rules in :mod:`medseg.training.rules`; none of them is imported here (no import cycle).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from medseg.inference.postprocess import PostprocessConfig
from medseg.training.augment import AugmentationConfig

__all__ = [
    "AugmentationConfig",
    "DataConfig",
    "LossConfig",
    "LossTermConfig",
    "ModelConfig",
    "OptimizerConfig",
    "PipelineConfig",
    "PostprocessConfig",
    "PreprocessingConfig",
    "RampConfig",
    "SamplingConfig",
    "ScheduleConfig",
    "TrainingConfig",
    "ValidationConfig",
]


@dataclass(frozen=True)
class DataConfig:
    """Where the data set is and what its labels mean (``labels``: class index -> name, C entries).

    ``ignore_label``: the value of voxels nobody annotated (partial annotations, issue #30; ``num_classes``
    ..255), left out of every loss, of foreground sampling and of validation; ``None``: every voxel is annotated.
    """

    root: str | None = None
    num_classes: int = 3
    labels: dict[str, str] = field(default_factory=lambda: {"0": "background", "1": "liver", "2": "tumor"})
    folds: int = 5
    fold_seed: int = 0
    group_by: str = "case"
    patients_csv: str | None = None
    splits: str | None = None
    cache_dir: str | None = None
    phantom_cases: int = 16
    phantom_size: str = "small"
    phantom_seed: int = 0
    ignore_label: int | None = None


@dataclass(frozen=True)
class PreprocessingConfig:
    """How the preprocessing plan is derived (see :mod:`medseg.preprocessing`)."""

    normalization: str = "ct_zscore"
    target_spacing_mm: tuple[float, ...] | None = None
    window_hu: tuple[float, ...] = (-150.0, 250.0)
    workers: int | None = None


@dataclass(frozen=True)
class ModelConfig:
    """The network: a registered model ``name`` (:func:`medseg.models.available_models`), its dimensions,
    and the builder's parameters; ``None`` leaves a parameter at the model's own default (which differs
    between models). Channels come from the data and the context slices (:meth:`PipelineConfig.model_config`).

    Parameters only some models take (e.g. ``aspp_rates`` of ``deeplabv3plus``) are written beside the
    others in YAML and kept in ``options``. The fields are the shared keys of
    :class:`medseg.models.settings.BackboneSettings` (``None``: the model's default), which alone validates
    them (:func:`medseg.training.rules.check_pipeline` builds it through :func:`medseg.models.model_settings`).
    """

    name: str = "unet"
    spatial_dims: int = 3
    depth: int | None = None
    base_filters: int | None = None
    max_filters: int | None = None
    norm: str | None = None
    kernel_size: int | None = None
    strides: tuple[int | tuple[int, ...], ...] | None = None
    deep_supervision: bool | None = None
    deep_supervision_heads: int | None = None
    dropout: float | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _coerce(cls, value: Any, where: str) -> Any:
        """Move the named model's own parameters into ``options`` (others stay, to be refused by name)."""
        if not isinstance(value, dict):
            return value
        from medseg.models import available_models, model_parameters

        name = value.get("name", "unet")
        if name not in available_models():
            return value
        fields = {f.name for f in dataclasses.fields(cls)}
        own = {k: v for k, v in value.items() if k not in fields and k in model_parameters(name)}
        rest = {k: v for k, v in value.items() if k not in own}
        return {**rest, "options": {**dict(rest.get("options") or {}), **own}} if own else value

    def builder_params(self) -> dict[str, Any]:
        """The set parameters as :func:`medseg.models.build_model` takes them (plain types)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "options"}
        return _plain({**{k: v for k, v in values.items() if v is not None}, **self.options})


@dataclass(frozen=True)
class RampConfig:
    """A loss term's weight ramp (:class:`medseg.losses.CompoundLoss`): ``+ per_epoch`` per epoch within
    ``[min, max]``."""

    per_epoch: float = 0.0
    max: float | None = None
    min: float = 0.0


@dataclass(frozen=True)
class LossTermConfig:
    """One weighted term of a compound loss: a registered loss ``name`` with its ``params``."""

    name: str
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    ramp: RampConfig | None = None

    @classmethod
    def _coerce(cls, value: Any, where: str) -> Any:
        return {"name": value} if isinstance(value, str) else value


@dataclass(frozen=True)
class LossConfig:
    """The training loss (``docs/losses.md``): a registered ``name`` with ``params``, or ``terms`` of a
    compound loss (``name: compound``).

    The YAML shorthands bind to it: ``loss: dice_ce`` (a name), ``loss: [{name: dice}, {name: ce}]`` (a list
    of terms) and ``loss: {name: boundary, weight: 0.01, ramp: {...}}`` (a one-term compound). Distance
    losses never take ``spacing_mm`` from here: it is the preprocessing plan's (:mod:`medseg.training.objective`).
    """

    name: str = "dice_ce"
    params: dict[str, Any] = field(default_factory=dict)
    terms: tuple[LossTermConfig, ...] = ()

    @classmethod
    def _coerce(cls, value: Any, where: str) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, list):
            return {"name": "compound", "terms": value}
        if isinstance(value, dict) and ("weight" in value or "ramp" in value):
            return {"name": "compound", "terms": [value]}
        if isinstance(value, dict) and value.get("name") == "compound" and isinstance(value.get("params"), dict):
            params = dict(value["params"])
            if "terms" in params:
                return {**value, "params": {k: v for k, v in params.items() if k != "terms"}, "terms": params["terms"]}
        return value


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
    """Loop settings. ``patch_size`` has 3 entries for a 3D model, 2 for a 2D one.

    Fine-tuning (:mod:`medseg.training.finetune`): ``init_from`` a medseg run or checkpoint or an nnU-Net v2
    results folder (its fold ``init_fold``); ``init_plan`` ``model`` (the pretrained plan) or ``data``;
    ``freeze_encoder_epochs`` epochs with the encoder frozen first.
    """

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
    init_from: str | None = None
    init_fold: int = 0
    init_plan: str = "model"
    freeze_encoder_epochs: int = 0


@dataclass(frozen=True)
class SamplingConfig:
    """Patch sampling: share of patches centred on a foreground voxel (nnU-Net: 1/3)."""

    foreground_fraction: float = 0.33


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
    """A whole training pipeline; every section typed (see the module docstring)."""

    name: str = "pipeline"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    postprocessing: PostprocessConfig = field(default_factory=PostprocessConfig)
    device: str = "auto"
    profiles: dict[str, Any] = field(default_factory=dict)

    @property
    def spatial_dims(self) -> int:
        return self.model.spatial_dims

    @property
    def in_channels(self) -> int:
        """Network input channels: 1, or ``2 k + 1`` stacked axial slices for a 2.5D model."""
        return 2 * self.training.context_slices + 1 if self.spatial_dims == 2 else 1

    def model_config(self) -> dict[str, Any]:
        """The ``model_config`` for :func:`medseg.models.build_model` (plain types, channels filled in)."""
        return {**self.model.builder_params(), "in_channels": self.in_channels, "out_channels": self.data.num_classes}

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, dicts, str, numbers), for YAML and checkpoints."""
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
