"""The steps of :func:`medseg.training.loop.train`: a :class:`Session` (what a run holds while it trains),
its data, resume, one epoch of training, validation, and the commit of an epoch.

**Commit order.** :func:`commit_epoch` writes an epoch's files in one order: ``metrics.csv`` (the new
row), ``curves.png``, ``best.pt`` (when the epoch improved the validation metric), then ``last.pt``,
the commit point, each file atomically (:mod:`medseg.utils.atomic`). A resume restarts after the epoch
of ``last.pt`` and, training deterministically, rewrites the later files identically; so a kill at any
moment leaves a folder from which ``--resume`` finishes with the same ``metrics.csv``, ``best.pt`` and
``last.pt`` as an uninterrupted run (the ``seconds`` column aside), redoing at most one epoch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.errors import ConfigError, DataError
from medseg.training import distributed as ddp
from medseg.training.config import PipelineConfig

__all__ = [
    "Session",
    "commit_epoch",
    "make_loader_for",
    "make_session",
    "prepare_session_data",
    "progress_bar",
    "read_resume_state",
    "resume_session",
    "train_one_epoch",
    "validate_epoch",
]

logger = logging.getLogger(__name__)

_METRIC_KEYS = {"mean_foreground_dice": "mean_foreground_dice", "liver_dice": "liver", "tumor_dice": "tumor"}


@dataclass
class Session:
    """A run while it trains: its settings, network, loss, optimiser and progress (mutable state, so not
    a settings object). ``prepared`` is set by :func:`prepare_session_data`."""

    config: PipelineConfig
    run_dir: Path
    fold: int
    info: ddp.DistributedInfo
    device: torch.device
    model: torch.nn.Module
    net: torch.nn.Module
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    use_amp: bool
    prepared: Any = None
    epoch: int = 0
    best: float = -float("inf")
    history: list[dict[str, Any]] = field(default_factory=list)
    last_dice: float | None = None
    model_config: dict[str, Any] = field(default_factory=dict)
    init: dict[str, Any] | None = None
    init_plan: Any = None


def make_session(config: PipelineConfig, run_dir: Path, *, fold: int, info, device: torch.device) -> Session:
    """Seed, then build the model (or read the pretrained one, :mod:`medseg.training.finetune`), the loss
    (once), the optimiser and the schedule: every setting they check fails here, before any data is read."""
    from medseg.training.finetune import build_network, encoder_modules
    from medseg.training.objective import build_objective
    from medseg.training.optimization import build_optimizer, build_scheduler, seed_everything

    t = config.training
    seed_everything(t.seed + info.rank, t.deterministic)
    model, model_config, init, init_plan = build_network(config)
    model = model.to(device)
    if t.freeze_encoder_epochs:
        encoder_modules(model)  # a model without a known encoder fails here
        if info.enabled:  # DDP registers the parameters that need a gradient once, when it wraps the model
            raise ConfigError("training.freeze_encoder_epochs is not supported under torchrun (several processes)")
    loss_fn = build_objective(config, model)
    optimizer = build_optimizer(config, model.parameters())
    use_amp = t.amp and device.type == "cuda"
    net = model
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    return Session(config, run_dir, fold, info, device, model, net, loss_fn, optimizer,
                   build_scheduler(config, optimizer), scaler, use_amp, model_config=model_config, init=init,
                   init_plan=init_plan)  # fmt: skip


def prepare_session_data(session: Session, *, data, resume: bool, workers: int | None) -> Session:
    """Check, split and preprocess the data (rank 0, which writes ``plan.json``, ``folds.json`` and
    ``data.json``, and ``init.json`` when fine-tuning; a resume reuses the saved split and plan, a new
    fine-tuning run the pretrained plan); give distance losses the plan's spacing."""
    from medseg.training.objective import use_plan_spacing
    from medseg.training.prepare import PreparedData, prepare_data
    from medseg.training.run_files import read_data_record, read_folds, read_plan, write_prepared

    config, run_dir = session.config, session.run_dir
    if session.info.is_main:
        saved = read_folds(run_dir, config.data.folds) if resume else None
        plan = (read_plan(run_dir) if resume else None) or session.init_plan  # fine-tuning: the pretrained plan
        prepared = prepare_data(config, data=data, fold=session.fold, folds=saved[1] if saved else None, plan=plan,
                                workers=workers)  # fmt: skip
        write_prepared(run_dir, prepared, fold=session.fold, fold_seed=config.data.fold_seed)
        if session.init is not None:
            from medseg.training.finetune import write_init_record

            write_init_record(run_dir, session.init)
    ddp.barrier(session.info)
    if not session.info.is_main:
        record, (_, folds) = read_data_record(run_dir), read_folds(run_dir, config.data.folds)
        prepared = PreparedData(record.root, record.cache_dir, read_plan(run_dir), folds,
                                folds[session.fold]["train"], folds[session.fold]["val"])  # fmt: skip
    use_plan_spacing(session.loss_fn, prepared.plan.target_spacing_mm, spatial_dims=config.spatial_dims)
    session.prepared = prepared
    return session


def _check_resume_fields(state: dict[str, Any], path: Path, epochs: int) -> None:
    """The training fields of ``last.pt`` (the shared ones are :class:`~medseg.runs.RunRecord`'s)."""
    epoch, history = state.get("epoch"), state.get("history")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= epochs:
        raise DataError(f"checkpoint field 'epoch' must be an integer in 0..{epochs} (training.epochs), "
                        f"got {epoch!r}", path=path)  # fmt: skip
    if not isinstance(history, list) or len(history) != epoch or not all(isinstance(r, dict) for r in history):
        raise DataError(f"checkpoint field 'history' must be {epoch} metrics rows", path=path)
    if not isinstance(state.get("best_metric"), (int, float)) or isinstance(state.get("best_metric"), bool):
        raise DataError(f"checkpoint field 'best_metric' must be a number, got {state.get('best_metric')!r}", path=path)
    for key in ("optimizer", "scheduler", "scaler", "rng"):
        if not isinstance(state.get(key), dict):
            raise DataError(f"checkpoint field {key!r} is missing or not a mapping (not a training checkpoint?)",
                            path=path)  # fmt: skip


def read_resume_state(session: Session) -> dict[str, Any]:
    """``last.pt`` of the session's run, loaded and checked (shared fields by
    :class:`~medseg.runs.RunRecord`, training fields here).

    Raises:
        DataError: ``last.pt`` is unreadable or has malformed fields; the message names it.
    """
    from medseg.runs.checkpoint import load_checkpoint
    from medseg.runs.record import RunRecord

    path = session.run_dir / "last.pt"
    state = load_checkpoint(path, map_location=session.device)
    RunRecord.from_checkpoint(state, source=path)
    _check_resume_fields(state, path, session.config.training.epochs)
    return state


def resume_session(session: Session, state: dict[str, Any]) -> None:
    """Load a checked ``last.pt`` state into the session: weights, optimiser, schedule, scaler, RNG, history.

    Raises:
        DataError: The state does not fit this run's model or optimiser.
    """
    from medseg.runs.checkpoint import restore_rng_state

    path = session.run_dir / "last.pt"
    try:
        session.model.load_state_dict(state["model"])
        session.optimizer.load_state_dict(state["optimizer"])
        session.scheduler.load_state_dict(state["scheduler"])
        session.scaler.load_state_dict(state["scaler"])
        if session.info.is_main:
            restore_rng_state(state["rng"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(f"does not fit this run ({first})", path=path) from None
    session.epoch, session.best, session.history = state["epoch"], float(state["best_metric"]), list(state["history"])
    session.last_dice = session.history[-1].get("val_metric") if session.history else None
    logger.info("resuming %s at epoch %d", session.run_dir, session.epoch)


def make_loader_for(session: Session):
    """The run's patch loader (:func:`medseg.training.data.make_loader`)."""
    import os

    from medseg.training.data import PatchSettings, make_loader

    config, t = session.config, session.config.training
    patches = PatchSettings(
        patch_size=t.patch_size, batch_size=t.batch_size, spatial_dims=config.spatial_dims,
        context_slices=t.context_slices, foreground_fraction=config.sampling.foreground_fraction,
        augment=config.augmentation, maps=frozenset(getattr(session.loss_fn, "required_maps", frozenset())),
        map_options=getattr(session.loss_fn, "map_options", None) or {}, num_classes=config.data.num_classes,
        seed=t.seed * 1_000_003 + session.info.rank, ignore_label=config.data.ignore_label,
    )  # fmt: skip
    workers = t.workers if t.workers is not None else max(0, (os.cpu_count() or 1) - 1)
    prepared = session.prepared
    return make_loader(prepared.cache_dir, prepared.train_ids, patches, workers=workers,
                       iterations_per_epoch=t.iterations_per_epoch,
                       pin_memory=session.device.type == "cuda")  # fmt: skip


def progress_bar(session: Session, *, enabled: bool | None):
    """A tqdm bar over every iteration of the run, starting at the resumed epoch."""
    from tqdm.auto import tqdm

    t = session.config.training
    return tqdm(total=t.epochs * t.iterations_per_epoch, initial=session.epoch * t.iterations_per_epoch,
                desc=f"{session.config.name} fold {session.fold}", unit="it", dynamic_ncols=True,
                disable=(not session.info.is_main) or (enabled is False))  # fmt: skip


def _train_step(session: Session, batch: dict[str, torch.Tensor], epoch: int) -> float:
    s, t = session, session.config.training
    image = batch["image"].to(s.device, non_blocking=True)
    label = batch["label"].to(s.device, non_blocking=True)
    extra = {k: batch[k].to(s.device, non_blocking=True) for k in getattr(s.loss_fn, "required_maps", ())}
    s.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(s.device.type, dtype=torch.float16, enabled=s.use_amp):
        outputs = s.net(image)
    loss = s.loss_fn(outputs, label, **extra)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}; lower optimizer.lr")
    s.scaler.scale(loss).backward()
    if t.grad_clip_norm:
        s.scaler.unscale_(s.optimizer)
        torch.nn.utils.clip_grad_norm_(s.model.parameters(), t.grad_clip_norm)
    s.scaler.step(s.optimizer)
    s.scaler.update()
    s.scheduler.step()
    return float(loss.detach())


def train_one_epoch(session: Session, loader, epoch: int, bar) -> dict[str, Any]:
    """One pass over the loader (the sample stream of epoch ``epoch``, also after a resume); the
    epoch's row ``{epoch, train_loss, lr, seconds}``."""
    if hasattr(session.loss_fn, "set_epoch"):
        session.loss_fn.set_epoch(epoch)
    if session.config.training.freeze_encoder_epochs:
        from medseg.training.finetune import set_encoder_frozen

        set_encoder_frozen(session.model, epoch < session.config.training.freeze_encoder_epochs)
    loader.sampler.set_epoch(epoch)
    started, losses = time.perf_counter(), []
    session.net.train()
    for batch in loader:
        losses.append(_train_step(session, batch, epoch))
        bar.update()
        dice = "-" if session.last_dice is None else f"{session.last_dice:.3f}"
        bar.set_postfix(loss=f"{losses[-1]:.3f}", dice=dice)
    mean = ddp.all_mean(float(np.mean(losses)), session.info, session.device)
    return {"epoch": epoch + 1, "train_loss": mean, "lr": session.optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started}  # fmt: skip


def validate_epoch(session: Session, epoch: int) -> dict[str, Any]:
    """Validation Dice (``val_dice_<region>[_post]``, ``val_metric``) on validation epochs (every
    ``validation.every_n_epochs`` and the last), on rank 0; ``{}`` otherwise."""
    from medseg.inference.postprocess import applies_to
    from medseg.inference.sliding_window import WindowSettings
    from medseg.training.validate import validate_cases

    config, v, t = session.config, session.config.validation, session.config.training
    if not session.info.is_main or ((epoch + 1) % v.every_n_epochs and epoch + 1 != t.epochs):
        return {}
    prepared = session.prepared
    ids = prepared.val_ids[: v.max_cases] if v.max_cases else prepared.val_ids
    window = WindowSettings(patch_size=tuple(t.patch_size), num_classes=config.data.num_classes, overlap=v.overlap,
                            batch_size=v.batch_size, context_slices=t.context_slices, device=session.device,
                            amp=session.use_amp)  # fmt: skip
    postprocess = config.postprocessing if applies_to(config.data.labels) else None  # steps assume LiTS labels
    dice = validate_cases(session.model, prepared.cache_dir, ids, window, postprocess=postprocess,
                          spacing_mm=prepared.plan.target_spacing_mm, ignore_label=config.data.ignore_label)
    row: dict[str, Any] = {f"val_dice_{k}": val for k, val in dice.items() if k != "mean_foreground_dice"}
    row["val_metric"] = session.last_dice = dice[_METRIC_KEYS[v.metric]]
    return row


def _inference_info(config: PipelineConfig) -> dict[str, Any]:
    """The checkpoint's ``inference`` record (read by :class:`medseg.runs.RunRecord`)."""
    t = config.training
    return {
        "patch_size": list(t.patch_size), "context_slices": t.context_slices, "spatial_dims": config.spatial_dims,
        "num_classes": config.data.num_classes, "labels": dict(config.data.labels),
        "postprocessing": config.postprocessing.to_dict(), "overlap": config.validation.overlap,
        "mirror_axes": config.augmentation.mirror_axes(config.spatial_dims),
    }  # fmt: skip


def _checkpoint_state(session: Session) -> dict[str, Any]:
    from medseg.runs.checkpoint import capture_rng_state
    from medseg.training.run_files import training_data_of

    s = session
    init = {} if s.init is None else {"init": s.init}
    return {**init, "model_config": s.model_config, "plan": s.prepared.plan.to_dict(), "config": s.config.to_dict(),
            "inference": _inference_info(s.config), "fold": s.fold, "model": s.model.state_dict(), "epoch": s.epoch,
            "optimizer": s.optimizer.state_dict(), "scheduler": s.scheduler.state_dict(),
            "scaler": s.scaler.state_dict(), "rng": capture_rng_state(), "best_metric": s.best,
            "history": s.history, "training_data": training_data_of(s.prepared).to_dict()}  # fmt: skip


def commit_epoch(session: Session, row: dict[str, Any], tensorboard) -> None:
    """Record epoch ``row`` and write its files in the commit order of the module docstring."""
    from medseg.runs.checkpoint import save_checkpoint
    from medseg.training.records import plot_curves, write_metrics_csv

    s = session
    s.history.append(row)
    s.epoch = row["epoch"]
    if s.info.is_main:
        improved = row.get("val_metric") is not None and row["val_metric"] > s.best
        s.best = row["val_metric"] if improved else s.best
        write_metrics_csv(s.run_dir / "metrics.csv", s.history)
        if "val_metric" in row:
            plot_curves(s.run_dir / "curves.png", s.history, title=f"{s.config.name} fold {s.fold}")
        state = _checkpoint_state(s)
        if improved:
            save_checkpoint(s.run_dir / "best.pt", state)
        save_checkpoint(s.run_dir / "last.pt", state)
        tensorboard.log(row, s.epoch)
    ddp.barrier(s.info)
