"""Training: pipeline configuration, the training loop, checkpoints and distributed setup."""

from medseg.training.checkpoint import (
    FORMAT_VERSION,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

__all__ = [
    "FORMAT_VERSION",
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]
