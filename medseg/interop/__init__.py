"""Other tools' models and formats: read them, build their networks, map their labels - nothing else.

:mod:`medseg.interop.nnunet` reads nnU-Net v2 trained-model folders (``plans.json``, ``dataset.json``,
``fold_K/checkpoint_*.pth``) without running pickled code, builds the network the plans describe with
``dynamic-network-architectures`` and reproduces nnU-Net's preprocessing and restoration, so that
:class:`medseg.inference.Predictor` runs such a folder like one of its own runs.
"""

from medseg.utils.lazy import lazy_exports

_EXPORTS = {
    "NnUNetModel": "nnunet",
    "is_nnunet_folder": "nnunet",
    "load_nnunet_model": "nnunet",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
