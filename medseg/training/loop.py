"""The training loop: :func:`train`, from a resolved pipeline to a run folder, in named steps.

Defaults follow nnU-Net (Isensee et al., Nature Methods 2021): SGD with Nesterov momentum and a poly
learning-rate schedule, Dice + cross-entropy with deep supervision, gradient clipping at norm 12, AMP on
CUDA, one third of patches centred on foreground. Unlike nnU-Net (which keeps only every 50th epoch),
every epoch is committed (:func:`medseg.training.epoch.commit_epoch`) with model, optimiser, scheduler,
scaler and RNG states, so ``resume=True`` continues bit-for-bit (on CPU, workers seeded per epoch) and a
run killed at any moment loses at most one epoch.

:func:`train` reads as its steps: check the run folder and take its lock; build the model, loss and
optimiser (bad settings fail here, before any data is read); prepare the data; resume; then per epoch
train, validate and commit.

Run folder::

    config.yaml  plan.json  folds.json  data.json  last.pt  best.pt  metrics.csv  curves.png  [tensorboard/]
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError, DataError
from medseg.training import distributed as ddp
from medseg.training.config import PipelineConfig
from medseg.training.epoch import Session, commit_epoch, make_session, resume_session, train_one_epoch, validate_epoch
from medseg.training.lock import run_lock
from medseg.training.run_files import check_resume, load_run_config, write_run_config

__all__ = ["load_run_config", "train"]

logger = logging.getLogger(__name__)


def _check_run_folder(run_dir: Path, config: PipelineConfig, *, fold: int | None, data, resume: bool):
    """``(fold, data)`` of the run after refusing what contradicts the folder (before anything is written)."""
    if not resume:
        if (run_dir / "last.pt").exists():
            raise ConfigError(f"{run_dir} already holds a run (last.pt); use --resume or another --out")
        return fold or 0, data
    return check_resume(run_dir, config, fold=fold, data=data)


def train(
    config: PipelineConfig,
    *,
    run_dir: str | os.PathLike,
    fold: int | None = None,
    data: str | os.PathLike | None = None,
    resume: bool = False,
    workers: int | None = None,
    progress: bool | None = None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``config`` on one fold into ``run_dir``; returns the last metrics row plus ``best_metric``.

    Args:
        config: Resolved pipeline (:func:`medseg.training.loader.load_pipeline`).
        run_dir: Run folder (created). Must not hold a run (``last.pt``) unless ``resume``.
        fold: Cross-validation fold (``None``: 0, or the resumed run's own).
        data: Data set folder (``--data``); ``None``: the resumed run's, ``data.root``, else the phantom set.
        resume: Continue the run in ``run_dir``: from ``last.pt``, or from the start when it was stopped in
            its first epoch. ``fold``, ``data`` and ``config`` must agree with the folder.
        workers: Processes for checking/preprocessing (``None``: all cores).
        progress: Show the progress bar (``None``: when stderr is a terminal).
        on_epoch_end: Called as ``fn(epoch, row)`` after each epoch is committed.

    Raises:
        ConfigError, DataError: Bad settings, a contradicting resume, a locked run folder or bad data,
            before any training step.
    """
    run_dir = Path(run_dir)
    if resume and not (run_dir / "config.yaml").is_file():
        raise DataError("nothing to resume: no config.yaml (not a medseg run folder)", path=run_dir)
    info, device = ddp.setup_distributed(config.device)
    try:
        session = make_session(config, run_dir, fold=fold or 0, info=info, device=device)  # nothing written yet
        with run_lock(run_dir, enabled=info.is_main):
            session.fold, data = _check_run_folder(run_dir, config, fold=fold, data=data, resume=resume)
            if info.is_main:
                _write_run_start(run_dir, config, data=data, resume=resume)
            session = _prepare_session(session, data=data, resume=resume, workers=workers)
            return _run_epochs(session, progress=progress, on_epoch_end=on_epoch_end)
    finally:
        ddp.cleanup_distributed(info)


def _write_run_start(run_dir: Path, config: PipelineConfig, *, data, resume: bool) -> None:
    """``config.yaml`` (and, for a new run on a given data set, ``data.json``): what a run killed before
    its first epoch needs to resume."""
    from medseg.training.prepare import cache_dir_for
    from medseg.training.run_files import write_data_record

    root = data if data is not None else config.data.root
    if not resume and root is not None:  # the config records the data set it trains on, not ``null``
        config = replace(config, data=replace(config.data, root=str(Path(root).resolve())))
    write_run_config(run_dir, config)
    if not resume and root is not None:
        write_data_record(run_dir, root, cache_dir_for(config, root))


def _prepare_session(session: Session, *, data, resume: bool, workers: int | None) -> Session:
    """Data prepared (rank 0 writes the run files), plan spacing given to the loss, state resumed; a
    resumed run that has already finished needs no data."""
    from medseg.training.epoch import prepare_session_data, read_resume_state

    state = read_resume_state(session) if resume and (session.run_dir / "last.pt").exists() else None
    if state is not None and state["epoch"] >= session.config.training.epochs:
        session.epoch, session.best, session.history = state["epoch"], float(state["best_metric"]), state["history"]
        logger.info("%s: the run has finished all %d epochs", session.run_dir, session.epoch)
        return session
    session = prepare_session_data(session, data=data, resume=resume, workers=workers)
    if state is not None:
        resume_session(session, state)
    elif resume:
        logger.warning("%s: no last.pt (stopped in its first epoch): starting the run from epoch 1", session.run_dir)
    return session


def _run_epochs(session: Session, *, progress: bool | None, on_epoch_end) -> dict[str, Any]:
    """Train, validate and commit every remaining epoch; the last row plus ``best_metric``."""
    from medseg.training.epoch import make_loader_for, progress_bar
    from medseg.training.records import TensorBoard

    t = session.config.training
    row: dict[str, Any] = session.history[-1] if session.history else {}
    if session.epoch >= t.epochs:
        return {**row, "best_metric": session.best, "run_dir": str(session.run_dir)}
    loader = make_loader_for(session)
    bar = progress_bar(session, enabled=progress)
    tb = TensorBoard(session.run_dir / "tensorboard", enabled=session.info.is_main)
    with contextlib.closing(bar), contextlib.closing(tb):
        for epoch in range(session.epoch, t.epochs):
            row = train_one_epoch(session, loader, epoch, bar)
            row.update(validate_epoch(session, epoch))
            commit_epoch(session, row, tb)
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
    return {**row, "best_metric": session.best, "run_dir": str(session.run_dir)}
