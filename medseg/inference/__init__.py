"""Inference: sliding window, test-time augmentation, post-processing, and the predictor
(checkpoint -> label map on the scan's own grid), plus the batch loop behind ``medseg predict``.

Names are imported on first use, so ``medseg --help`` (which imports :mod:`medseg.inference.cli`) does
not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BatchSummary": "batch",
    "CaseOutcome": "batch",
    "collect_inputs": "batch",
    "predict_batch": "batch",
    "shard": "batch",
    "PostprocessConfig": "postprocess",
    "postprocess_labels": "postprocess",
    "InferenceSettings": "predictor",
    "Predictor": "predictor",
    "find_checkpoint": "predictor",
    "restore_argmax": "restore",
    "predict_logits": "sliding_window",
    "mirrored": "tta",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
