"""The training loop: one function, :func:`train`, from a resolved pipeline to a run folder.

Defaults follow nnU-Net (Isensee et al., Nature Methods 2021): SGD with Nesterov momentum and a poly
learning-rate schedule, Dice + cross-entropy with deep supervision, gradient clipping at norm 12, AMP on
CUDA, one third of patches centred on foreground. Unlike nnU-Net (which keeps only every 50th epoch),
``last.pt`` is written atomically after every epoch with model, optimiser, scheduler, scaler and RNG
states, so ``resume=True`` continues bit-for-bit (on CPU, workers seeded per epoch) and a killed run loses
at most one epoch.

Run folder::

    config.yaml  plan.json  folds.json  data.json  last.pt  best.pt  metrics.csv  curves.png  [tensorboard/]
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from medseg.errors import ConfigError, DataError
from medseg.runs.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from medseg.training import distributed as ddp
from medseg.training.config import PipelineConfig, config_from_dict
from medseg.training.records import TensorBoard, plot_curves, write_metrics_csv
from medseg.utils.atomic import atomic_write_json, atomic_write_text

__all__ = ["build_optimizer", "build_scheduler", "load_run_config", "train"]

logger = logging.getLogger(__name__)


def build_optimizer(config: PipelineConfig, parameters) -> torch.optim.Optimizer:
    """SGD-Nesterov (nnU-Net) or AdamW (Loshchilov & Hutter 2019) from ``config.optimizer``."""
    o = config.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(parameters, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0,
                               weight_decay=o.weight_decay)  # fmt: skip
    return torch.optim.AdamW(parameters, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)


def build_scheduler(config: PipelineConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-iteration schedule over ``epochs * iterations_per_epoch`` steps, with optional linear warm-up.

    ``poly``: ``(1 - t / T) ** power`` (nnU-Net); ``cosine``: ``(1 + cos(pi t / T)) / 2``; ``constant``.
    """
    s, t = config.schedule, config.training
    total = max(1, t.epochs * t.iterations_per_epoch)

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / s.warmup_iterations) if s.warmup_iterations > 0 else 1.0
        progress = min(step, total) / total
        if s.name == "poly":
            return warm * (1.0 - progress) ** s.power
        if s.name == "cosine":
            return warm * 0.5 * (1.0 + math.cos(math.pi * progress))
        return warm

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def load_run_config(run_dir: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """The resolved config saved in a run folder, with ``--set`` overrides applied (for ``--resume``)."""
    import yaml

    from medseg.training.config import apply_overrides

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise DataError("no config.yaml: not a medseg run folder (nothing to resume)", path=run_dir)
    return config_from_dict(apply_overrides(yaml.safe_load(path.read_text()), overrides))


def _seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (MONAI and legacy code read the global generator)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def _make_loss(config: PipelineConfig, model: torch.nn.Module) -> torch.nn.Module:
    from medseg.losses import DeepSupervisionLoss, build_loss

    loss = build_loss(config.loss)
    heads = len(getattr(model, "_head_strides", []))
    if heads:
        weights = [1.0] * (heads + 1) if config.training.deep_supervision_weights == "equal" else None
        loss = DeepSupervisionLoss(loss, heads + 1, weights=weights)
    return loss


def _mirror_axes(config: PipelineConfig) -> list[int]:
    """Spatial axes the network saw mirrored in training: the ones test-time augmentation may mirror."""
    from medseg.training.augment import AugmentConfig

    if not config.augmentation.enabled:
        return []
    return AugmentConfig.from_dict(config.augmentation.params).mirror_axes(config.spatial_dims)


def _validation_postprocess(config: PipelineConfig):
    """The run's post-processing for validation (``val_dice_<region>_post``); ``None`` unless the labels are
    LiTS' (the steps assume 1 liver, 2 tumor)."""
    from medseg.inference.postprocess import PostprocessConfig, applies_to

    return PostprocessConfig.from_dict(config.postprocessing) if applies_to(config.data.labels) else None


def _inference_info(config: PipelineConfig) -> dict[str, Any]:
    from medseg.inference.postprocess import PostprocessConfig

    t = config.training
    return {
        "patch_size": list(t.patch_size), "context_slices": t.context_slices, "spatial_dims": config.spatial_dims,
        "num_classes": config.data.num_classes, "labels": dict(config.data.labels),
        "postprocessing": PostprocessConfig.from_dict(config.postprocessing).to_dict(),
        "overlap": config.validation.overlap, "mirror_axes": _mirror_axes(config),
    }  # fmt: skip


def _prepare(config, run_dir: Path, *, data, fold, resume, workers, info):
    """Rank 0 checks/preprocesses and writes the run files; other ranks read them."""
    from medseg.preprocessing import PreprocessingPlan
    from medseg.training.prepare import PreparedData, prepare_data

    if info.is_main:
        folds = plan = None
        if resume:
            folds = json.loads((run_dir / "folds.json").read_text())["folds"]
            plan = PreprocessingPlan.from_dict(json.loads((run_dir / "plan.json").read_text()))
        prepared = prepare_data(config, data=data, fold=fold, folds=folds, plan=plan, workers=workers)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", config.to_yaml())
        atomic_write_json(run_dir / "plan.json", prepared.plan.to_dict())
        folds_record = {"fold": fold, "seed": config.data.fold_seed, "folds": prepared.folds}
        atomic_write_json(run_dir / "folds.json", folds_record)
        atomic_write_json(run_dir / "data.json", {"root": str(prepared.root), "cache_dir": str(prepared.cache_dir)})
    ddp.barrier(info)
    if info.is_main:
        return prepared
    paths = json.loads((run_dir / "data.json").read_text())
    folds = json.loads((run_dir / "folds.json").read_text())["folds"]
    plan = PreprocessingPlan.from_dict(json.loads((run_dir / "plan.json").read_text()))
    return PreparedData(Path(paths["root"]), Path(paths["cache_dir"]), plan, folds, folds[fold]["train"],
                        folds[fold]["val"])  # fmt: skip


def train(
    config: PipelineConfig,
    *,
    run_dir: str | os.PathLike,
    fold: int = 0,
    data: str | os.PathLike | None = None,
    resume: bool = False,
    workers: int | None = None,
    progress: bool | None = None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``config`` on fold ``fold`` into ``run_dir``; returns the last metrics row plus ``best_metric``.

    Args:
        config: Resolved pipeline (:func:`medseg.training.config.load_pipeline`).
        run_dir: Run folder (created). Must not hold a run unless ``resume``.
        fold: Cross-validation fold.
        data: Data set folder (``--data``); ``None``: ``data.root``, else the built-in phantom set.
        resume: Continue from ``run_dir/last.pt``.
        workers: Processes for checking/preprocessing (``None``: all cores).
        progress: Show the progress bar (``None``: when stderr is a terminal).
        on_epoch_end: Called as ``fn(epoch, row)`` after each epoch's files are written.

    Raises:
        ConfigError, DataError: Bad settings or data, before any training step.
    """
    from medseg.models import build_model
    from medseg.training.data import make_loader
    from medseg.training.validate import validate_cases

    run_dir = Path(run_dir)
    if not resume and (run_dir / "last.pt").exists():
        raise ConfigError(f"{run_dir} already holds a run (last.pt); use --resume or another --out")
    if resume and not (run_dir / "last.pt").exists():
        raise DataError("nothing to resume: no last.pt", path=run_dir)
    if resume and data is None and (run_dir / "data.json").is_file():  # the data set the run started on
        data = json.loads((run_dir / "data.json").read_text())["root"]
    info, device = ddp.setup_distributed(config.device)
    t = config.training
    _seed_everything(t.seed + info.rank, t.deterministic)
    model = build_model(config.model_config()).to(device)  # bad model settings fail here, before the data
    loss_fn = _make_loss(config, model)
    prepared = _prepare(config, run_dir, data=data, fold=fold, resume=resume, workers=workers, info=info)
    optimizer = build_optimizer(config, model.parameters())
    scheduler = build_scheduler(config, optimizer)
    use_amp = t.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start_epoch, best, history = 0, -math.inf, []
    if resume:
        state = load_checkpoint(run_dir / "last.pt", map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best, history = int(state["epoch"]), float(state["best_metric"]), list(state["history"])
        if info.is_main:
            restore_rng_state(state["rng"])
        logger.info("resuming %s at epoch %d", run_dir, start_epoch)
    net = model
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    maps = frozenset(getattr(loss_fn, "required_maps", frozenset()))
    postprocess = _validation_postprocess(config)
    augment = dict(config.augmentation.params) if config.augmentation.enabled else None
    loader_workers = t.workers if t.workers is not None else max(0, (os.cpu_count() or 1) - 1)
    tb = TensorBoard(run_dir / "tensorboard", enabled=info.is_main)
    base = {"model_config": config.model_config(), "plan": prepared.plan.to_dict(), "config": config.to_dict(),
            "inference": _inference_info(config), "fold": fold}  # fmt: skip
    bar = tqdm(total=t.epochs * t.iterations_per_epoch, initial=start_epoch * t.iterations_per_epoch,
               desc=f"{config.name} fold {fold}", unit="it", disable=(not info.is_main) or (progress is False),
               dynamic_ncols=True)  # fmt: skip
    loader = make_loader(
        prepared.cache_dir, prepared.train_ids, patch_size=t.patch_size, batch_size=t.batch_size,
        spatial_dims=config.spatial_dims, context_slices=t.context_slices,
        foreground_fraction=config.sampling.foreground_fraction, augment=augment, maps=maps,
        map_options=getattr(loss_fn, "map_options", None), num_classes=config.data.num_classes,
        spacing_mm=None, workers=loader_workers, seed=t.seed * 1_000_003 + info.rank,
        iterations_per_epoch=t.iterations_per_epoch, pin_memory=device.type == "cuda",
    )  # fmt: skip
    last_dice = history[-1].get("val_metric") if history else None
    row: dict[str, Any] = history[-1] if history else {}
    try:
        for epoch in range(start_epoch, t.epochs):
            if hasattr(loss_fn, "set_epoch"):
                loss_fn.set_epoch(epoch)
            loader.sampler.set_epoch(epoch)  # the sample stream of epoch `epoch`, also after a resume
            started, losses = time.perf_counter(), []
            net.train()
            for batch in loader:
                image = batch["image"].to(device, non_blocking=True)
                label = batch["label"].to(device, non_blocking=True)
                extra = {k: batch[k].to(device, non_blocking=True) for k in maps}
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    outputs = net(image)
                loss = loss_fn(outputs, label, **extra)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}; lower optimizer.lr")
                scaler.scale(loss).backward()
                if t.grad_clip_norm:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip_norm)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                losses.append(float(loss.detach()))
                bar.update()
                bar.set_postfix(loss=f"{losses[-1]:.3f}", dice="-" if last_dice is None else f"{last_dice:.3f}")
            row = {"epoch": epoch + 1, "train_loss": ddp.all_mean(float(np.mean(losses)), info, device),
                   "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - started}  # fmt: skip
            validate = (epoch + 1) % config.validation.every_n_epochs == 0 or epoch + 1 == t.epochs
            if info.is_main and validate:
                v = config.validation
                ids = prepared.val_ids[: v.max_cases] if v.max_cases else prepared.val_ids
                dice = validate_cases(model, prepared.cache_dir, ids, patch_size=t.patch_size,
                                      num_classes=config.data.num_classes, context_slices=t.context_slices,
                                      overlap=v.overlap, batch_size=v.batch_size, device=device,
                                      amp=use_amp, postprocess=postprocess,
                                      spacing_mm=prepared.plan.target_spacing_mm)  # fmt: skip
                row.update({f"val_dice_{k}": val for k, val in dice.items() if k != "mean_foreground_dice"})
                key = {"mean_foreground_dice": "mean_foreground_dice", "liver_dice": "liver", "tumor_dice": "tumor"}
                row["val_metric"] = last_dice = dice[key[v.metric]]
            history.append(row)
            if info.is_main:
                improved = row.get("val_metric") is not None and row["val_metric"] > best
                best = row["val_metric"] if improved else best
                state = {**base, "model": model.state_dict(), "epoch": epoch + 1, "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                         "rng": capture_rng_state(), "best_metric": best, "history": history}  # fmt: skip
                save_checkpoint(run_dir / "last.pt", state)
                if improved:
                    save_checkpoint(run_dir / "best.pt", state)
                write_metrics_csv(run_dir / "metrics.csv", history)
                if validate:
                    plot_curves(run_dir / "curves.png", history, title=f"{config.name} fold {fold}")
                tb.log(row, epoch + 1)
            ddp.barrier(info)
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
    finally:
        bar.close()
        tb.close()
        ddp.cleanup_distributed(info)
    return {**row, "best_metric": best, "run_dir": str(run_dir)}
