"""Training: pipeline configuration, the training loop, checkpoints and distributed setup.

Example:
    >>> from medseg.training import load_pipeline, train
    >>> config = load_pipeline("liver", overrides=["training.epochs=50"])  # doctest: +SKIP
    >>> train(config, run_dir="runs/liver/fold0", data="data/LiTS", fold=0)  # doctest: +SKIP
"""

from medseg.training.checkpoint import (
    FORMAT_VERSION,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from medseg.training.config import PipelineConfig, apply_overrides, config_from_dict, find_pipeline, load_pipeline
from medseg.training.data import make_loader
from medseg.training.loop import build_optimizer, build_scheduler, load_run_config, train
from medseg.training.prepare import make_folds, prepare_data

__all__ = [
    "FORMAT_VERSION",
    "PipelineConfig",
    "apply_overrides",
    "build_optimizer",
    "build_scheduler",
    "capture_rng_state",
    "config_from_dict",
    "find_pipeline",
    "load_checkpoint",
    "load_pipeline",
    "load_run_config",
    "make_folds",
    "make_loader",
    "prepare_data",
    "restore_rng_state",
    "save_checkpoint",
    "train",
]
