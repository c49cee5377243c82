"""nnU-Net v2 trained-model folders: read without running pickled code, networks built with
``dynamic-network-architectures``, nnU-Net's preprocessing and restoration reproduced from the plans.

Imported by :class:`medseg.inference.Predictor` (``from_run`` on such a folder); imports ``io`` only.
"""

from medseg.utils.lazy import lazy_exports

_EXPORTS = {
    "NNUNET_SAFE_GLOBALS": "checkpoint",
    "load_nnunet_checkpoint": "checkpoint",
    "class_names": "labels",
    "CHECKPOINTS": "model",
    "NnUNetModel": "model",
    "is_nnunet_folder": "model",
    "load_nnunet_model": "model",
    "build_nnunet_network": "network",
    "NnUNetPlan": "plan",
    "NnUNetRecord": "plan",
    "NNUNET_MODEL_NAME": "trainable",
    "NnUNetTrainable": "trainable",
    "build_trainable_network": "trainable",
    "medseg_axes": "trainable",
    "nnunet_gaussian": "windows",
    "nnunet_steps": "windows",
    "nnunet_window_slices": "windows",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
