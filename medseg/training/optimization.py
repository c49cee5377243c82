"""What a session is built from besides the network: the optimiser, the learning-rate schedule and the
seeds (nnU-Net's defaults: SGD with Nesterov momentum and a poly schedule; Isensee et al., Nature Methods
2021). Used by :func:`medseg.training.epoch.make_session`; their own module, so the loop and the epoch
steps do not import each other.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from medseg.training.config import PipelineConfig

__all__ = ["build_optimizer", "build_scheduler", "seed_everything"]


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


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy's global generator and torch; optionally deterministic algorithms only."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (MONAI and legacy code read the global generator)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
