"""Run folders, the neutral ground of training and inference: checkpoints (atomic save, ``weights_only``
load), finding a run's checkpoint, the device rule, and :class:`RunRecord` (what inference needs from a
run). Training writes runs through this package and inference reads them through it, so inference never
imports training (see ``docs/architecture.md``).

Names are imported on first use, so importing the package does not load torch.
"""

from medseg.utils.lazy import lazy_exports

_EXPORTS = {
    "FORMAT_VERSION": "checkpoint",
    "capture_rng_state": "checkpoint",
    "load_checkpoint": "checkpoint",
    "restore_rng_state": "checkpoint",
    "save_checkpoint": "checkpoint",
    "resolve_device": "device",
    "CHECKPOINT_NAMES": "folder",
    "find_checkpoint": "folder",
    "find_run_folder": "folder",
    "RunRecord": "record",
    "PHANTOM_WARNING": "provenance",
    "TrainingData": "provenance",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
