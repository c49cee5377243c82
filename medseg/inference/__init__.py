"""Inference: sliding window, test-time augmentation, post-processing, and the predictor
(checkpoint -> label map on the scan's own grid), plus the batch loop behind ``medseg predict``.

Names are imported on first use, so ``medseg --help`` (which imports :mod:`medseg.cli.predict`) does
not load torch.
"""

from medseg.utils.lazy import lazy_exports

_EXPORTS = {
    "BatchOptions": "batch",
    "BatchSummary": "batch",
    "CaseOutcome": "batch",
    "CaseWriter": "batch",
    "collect_inputs": "batch",
    "predict_batch": "batch",
    "PostprocessConfig": "postprocess",
    "postprocess_labels": "postprocess",
    "InferenceSettings": "predictor",
    "Predictor": "predictor",
    "restore_argmax": "restore",
    "predict_logits": "sliding_window",
    "WindowSettings": "sliding_window",
    "WindowBlend": "sliding_window",
    "CoarseToFineSettings": "coarse_to_fine",
    "predict_coarse_to_fine": "coarse_to_fine",
    "mirrored": "tta",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
