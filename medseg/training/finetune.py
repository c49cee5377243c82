"""Fine-tuning: the network a run starts from (``training.init_from``), its output layers, its plan, and the
frozen-encoder warm-up.

``training.init_from`` names a pretrained model, in the spirit of transfer learning for medical
segmentation (Chen et al. 2019, "Med3D: Transfer Learning for 3D Medical Image Analysis"):

* a medseg run folder (``best.pt``, else ``last.pt``), a checkpoint file, or a folder of fold runs
  (``fold<K>/``, ``training.init_fold``): its ``model_config`` and weights; the pipeline's ``model`` section
  is not used;
* an nnU-Net v2 results folder (``.../<trainer>__<plans>__<configuration>``, ``fold_<init_fold>/
  checkpoint_final.pth``): the network its ``plans.json`` describes, built by :mod:`medseg.interop.nnunet`
  (:class:`~medseg.interop.nnunet.NnUNetTrainable`, on medseg's axis order) with deep supervision.

Either way the run trains in medseg's loop (losses, sampling, deep supervision, resume). Where the classes
differ from ``data.labels`` (their number, or a name at an index), every layer whose shape depends on the
number of classes (the output layers, found by building the network with one class more) keeps its fresh
initialisation but for the output channels of the classes both name alike (copied); :func:`build_network`
says which layers, which classes were kept and why, and the run records it (``init.json`` and every
checkpoint's ``init``).

The plan comes from the pretrained model (``training.init_plan: model``), with
``preprocessing.target_spacing_mm`` replacing its spacing when set; ``init_plan: data`` plans from the
data set as a new run does. For an nnU-Net model medseg's own preprocessing runs (canonical R-A-S grid,
medseg's resampling, no crop to the non-zero box) with the nnU-Net plan's target spacing and CT
normalisation values (clip to its 0.5/99.5 percentiles, its mean and standard deviation), which is close
to nnU-Net's preprocessing but not identical (``docs/training.md``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medseg.errors import ConfigError, DataError
from medseg.training.config import PipelineConfig

__all__ = ["INIT_FILE", "Pretrained", "build_network", "encoder_modules", "read_pretrained", "set_encoder_frozen",
           "write_init_record"]

logger = logging.getLogger(__name__)

INIT_FILE = "init.json"


@dataclass(frozen=True)
class Pretrained:
    """A pretrained model as the run will start from it.

    Attributes:
        model_config: The builder config of the network (output channels: the pretrained model's).
        weights: Its state dict, keyed as the network built from ``model_config``.
        plan: Its :class:`~medseg.preprocessing.PreprocessingPlan` (an nnU-Net plan translated).
        labels: Class index (str) -> name of the pretrained model.
        source: What was read: ``{"path", "format", "checkpoint", "fold"}``.
    """

    model_config: dict[str, Any]
    weights: dict[str, torch.Tensor]
    plan: Any
    labels: dict[str, str]
    source: dict[str, Any]


def read_pretrained(path: str, *, fold: int = 0) -> Pretrained:
    """Read ``training.init_from`` (see the module docstring).

    Raises:
        DataError: Nothing there, or not a medseg run/checkpoint nor an nnU-Net v2 results folder; one line.
    """
    from medseg.interop.nnunet import is_nnunet_folder

    root = Path(path)
    if not root.exists():
        raise DataError("training.init_from: no such run folder, checkpoint or nnU-Net results folder", path=root)
    if is_nnunet_folder(root):
        return _read_nnunet(root, fold)
    return _read_medseg(root, fold)


def _read_medseg(root: Path, fold: int) -> Pretrained:
    from medseg.runs.checkpoint import load_checkpoint
    from medseg.runs.folder import CHECKPOINT_NAMES, find_checkpoint
    from medseg.runs.record import RunRecord

    if root.is_dir() and not any((root / n).is_file() for n in CHECKPOINT_NAMES) and (root / f"fold{fold}").is_dir():
        root = root / f"fold{fold}"  # a folder of fold runs: training.init_fold's
    if root.is_dir() and not any((root / n).is_file() for n in CHECKPOINT_NAMES):
        raise DataError("training.init_from: not a medseg run (no best.pt/last.pt), nor an nnU-Net v2 results "
                        "folder (plans.json, dataset.json, fold_K/)", path=root)  # fmt: skip
    file = find_checkpoint(root)
    state = load_checkpoint(file, map_location="cpu")
    record = RunRecord.from_checkpoint(state, source=file)
    source = {"path": str(root), "format": "medseg", "checkpoint": str(file), "fold": state.get("fold")}
    return Pretrained(model_config=dict(record.model_config), weights=state["model"], plan=record.plan,
                      labels=dict(record.labels), source=source)


def _read_nnunet(root: Path, fold: int) -> Pretrained:
    from medseg.interop.nnunet import NNUNET_MODEL_NAME, load_nnunet_model, medseg_axes

    model = load_nnunet_model(root, folds=[fold], checkpoint="final")
    plans = json.loads((root / "plans.json").read_text(encoding="utf-8"))
    plan = _translated_plan(model.plan, root / "plans.json")
    architecture = _architecture(plans, model.plan.configuration)
    model_config = {"name": NNUNET_MODEL_NAME, "spatial_dims": 3, "in_channels": 1, "out_channels": model.num_classes,
                    "deep_supervision": True, "architecture": architecture,
                    "axes": list(medseg_axes(model.plan.transpose_forward))}  # fmt: skip
    weights = {f"net.{k}": v for k, v in model.networks[0].state_dict().items()}
    return Pretrained(model_config=model_config, weights=weights, plan=plan, labels=dict(model.labels),
                      source={"path": str(root), "format": "nnU-Net v2", "checkpoint": model.sources[0], "fold": fold})


def _architecture(plans: dict[str, Any], configuration: str) -> dict[str, Any]:
    """The configuration's ``architecture`` section (following ``inherits_from``), plain JSON."""
    config = plans["configurations"][configuration]
    while "architecture" not in config and config.get("inherits_from"):
        config = plans["configurations"][config["inherits_from"]]
    return json.loads(json.dumps(config["architecture"]))


def _translated_plan(nnunet_plan, source: Path):
    """medseg's plan with the nnU-Net plan's target spacing and CT normalisation (the module docstring)."""
    from medseg.preprocessing import PreprocessingPlan

    if nnunet_plan.normalization != "CTNormalization":
        raise DataError(f"training.init_from: {nnunet_plan.normalization} cannot be fine-tuned (medseg's "
                        "preprocessing normalises CT as nnU-Net's CTNormalization)", path=source)  # fmt: skip
    i = nnunet_plan.intensity
    return PreprocessingPlan(target_spacing_mm=nnunet_plan.target_spacing_mm, normalization="ct_zscore",
                             clip_hu=nnunet_plan.clip_hu, mean=i["mean"], std=max(i["std"], 1e-8))  # fmt: skip


def run_plan(config: PipelineConfig, pretrained: Pretrained | None):
    """The plan a new run preprocesses with: the pretrained one (its spacing replaced by
    ``preprocessing.target_spacing_mm`` when set), or ``None`` (plan from the data set)."""
    if pretrained is None or config.training.init_plan == "data":
        return None
    spacing = config.preprocessing.target_spacing_mm
    return pretrained.plan if spacing is None else replace(pretrained.plan, target_spacing_mm=tuple(spacing))


def _build(model_config: dict[str, Any]) -> nn.Module:
    from medseg.interop.nnunet import NNUNET_MODEL_NAME, build_trainable_network
    from medseg.models import build_model

    if model_config["name"] == NNUNET_MODEL_NAME:
        return build_trainable_network(model_config)
    return build_model(model_config)


def _class_dependent_keys(model_config: dict[str, Any]) -> set[str]:
    """State-dict keys whose shape changes with the number of classes (built once more, RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        a = _build(model_config).state_dict()
        b = _build({**model_config, "out_channels": model_config["out_channels"] + 1}).state_dict()
    return {k for k in a if a[k].shape != b[k].shape}


def _check_compatible(config: PipelineConfig, pretrained: Pretrained) -> None:
    mc, source = pretrained.model_config, pretrained.source["path"]
    if mc.get("spatial_dims") != config.spatial_dims:
        raise ConfigError(f"training.init_from {source}: a {mc.get('spatial_dims')}D model cannot start a "
                          f"{config.spatial_dims}D pipeline (model.spatial_dims)")  # fmt: skip
    if mc.get("in_channels") != config.in_channels:
        raise ConfigError(f"training.init_from {source}: the model takes {mc.get('in_channels')} input channels, "
                          f"the pipeline feeds {config.in_channels} (training.context_slices)")  # fmt: skip


def build_network(config: PipelineConfig) -> tuple[nn.Module, dict[str, Any], dict[str, Any] | None, Any]:
    """The run's network: ``(model, model_config, init record, plan)``.

    Without ``training.init_from``: :func:`medseg.models.build_model` of the pipeline's ``model`` section,
    no record, no plan. With it: the pretrained network and weights, the layers that depend on the classes
    re-initialised where the classes differ, the record of what was done, and :func:`run_plan`'s plan.

    Raises:
        ConfigError, DataError: An unreadable or incompatible pretrained model (one line).
    """
    t = config.training
    if t.init_from is None:
        model_config = config.model_config()
        return _build(model_config), model_config, None, None
    pretrained = read_pretrained(t.init_from, fold=t.init_fold)
    _check_compatible(config, pretrained)
    model_config = {**pretrained.model_config, "out_channels": config.data.num_classes}
    try:
        model = _build(model_config)
    except ConfigError as exc:
        raise DataError(f"training.init_from: {exc}", path=pretrained.source["checkpoint"]) from None
    reason = _class_difference(pretrained.labels, dict(config.data.labels))
    skipped = sorted(_class_dependent_keys(model_config)) if reason else []
    _load_weights(model, pretrained, skipped)
    kept = _keep_named_classes(model, pretrained, skipped, dict(config.data.labels))
    record = {**pretrained.source, "pretrained_labels": pretrained.labels, "labels": dict(config.data.labels),
              "reinitialised": skipped, "reason": reason, "kept_classes": kept, "plan": t.init_plan}  # fmt: skip
    if skipped:
        logger.warning("fine-tuning from %s: %s; re-initialised %s (classes kept: %s)", pretrained.source["path"],
                       reason, ", ".join(skipped), kept or "none")  # fmt: skip
    return model, model_config, record, run_plan(config, pretrained)


def _load_weights(model: nn.Module, pretrained: Pretrained, skipped: list[str]) -> None:
    """Every pretrained weight but ``skipped`` into ``model``; anything else missing or extra is refused."""
    weights = {k: v for k, v in pretrained.weights.items() if k not in skipped}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or sorted(set(missing) - set(skipped)):
        first = (unexpected or sorted(set(missing) - set(skipped)))[0]
        raise DataError(f"training.init_from: the weights do not fit the model config (key {first})",
                        path=pretrained.source["checkpoint"])  # fmt: skip


def _keep_named_classes(model: nn.Module, pretrained: Pretrained, skipped: list[str], labels: dict[str, str]
                        ) -> dict[str, list[int]]:
    """In the re-initialised layers, copy the output channels of the classes both models name alike (by
    name, case-insensitively; e.g. background and liver of a LiTS model kept for a liver-only task).

    Returns:
        ``{name: [pretrained index, new index]}`` of the classes kept.
    """
    source = {name.lower(): int(k) for k, name in pretrained.labels.items()}
    pairs = {name: [source[name.lower()], int(k)] for k, name in labels.items() if name.lower() in source}
    state = model.state_dict()
    shaped = [k for k in skipped if pretrained.weights[k].shape[0] == len(pretrained.labels)
              and state[k].shape[0] == len(labels) and state[k].shape[1:] == pretrained.weights[k].shape[1:]]
    if not shaped or len(shaped) != len(skipped):  # channel 0 is not the class everywhere: keep nothing
        return {}
    with torch.no_grad():
        for key in shaped:
            for old, new in pairs.values():
                state[key][new].copy_(pretrained.weights[key][old])
    return pairs


def _class_difference(pretrained: dict[str, str], labels: dict[str, str]) -> str | None:
    """Why the output layers cannot be kept (``None``: the same classes, index by index)."""
    if len(pretrained) != len(labels):
        return f"the pretrained model has {len(pretrained)} classes, data.labels {len(labels)}"
    changed = [k for k in sorted(labels, key=int) if pretrained.get(k, "").lower() != labels[k].lower()]
    if changed:
        k = changed[0]
        return f"class {k} is {pretrained.get(k)!r} in the pretrained model, {labels[k]!r} in data.labels"
    return None


def encoder_modules(model: nn.Module) -> list[nn.Module]:
    """The encoder of a U-Net (medseg's ``unet``/``resunet``/``attention_unet``: input block, down blocks,
    bottleneck; an nnU-Net network: its ``encoder``).

    Raises:
        ConfigError: The model has no encoder this knows (``training.freeze_encoder_epochs`` is for U-Nets).
    """
    if hasattr(model, "encoder") and callable(model.encoder):
        return [model.encoder()]
    net = getattr(model, "net", None)
    if net is not None and all(hasattr(net, n) for n in ("input_block", "downsamples", "bottleneck")):
        return [net.input_block, net.downsamples, net.bottleneck]
    raise ConfigError(f"training.freeze_encoder_epochs: {type(model).__name__} has no U-Net encoder to freeze")


def set_encoder_frozen(model: nn.Module, frozen: bool) -> int:
    """Stop (or restart) gradients into the encoder; returns the number of parameters affected.

    A parameter without a gradient is skipped by SGD and AdamW alike: no step, no momentum, no weight decay.
    """
    count = 0
    for module in encoder_modules(model):
        for p in module.parameters():
            p.requires_grad_(not frozen)
            count += p.numel()
    return count


def write_init_record(run_dir: Path, record: dict[str, Any]) -> None:
    """``init.json``: where the run's weights came from and which layers were re-initialised (atomic)."""
    from medseg.utils.atomic import atomic_write_text

    atomic_write_text(run_dir / INIT_FILE, json.dumps(record, indent=2) + "\n")
