"""Segmentation networks: 2D/3D U-Net variants, FCN-32s/16s/8s, SegNet, DeepLab v3+, PSPNet, RefineNet and GCN
behind a name -> builder registry (``docs/models.md`` lists them with their papers).

Example:
    >>> from medseg.models import build_model
    >>> net = build_model({"name": "unet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3})
"""

from medseg.models import deeplab as _deeplab  # noqa: F401  (the imports register the built-in models)
from medseg.models import fcn as _fcn  # noqa: F401
from medseg.models import gcn as _gcn  # noqa: F401
from medseg.models import pspnet as _pspnet  # noqa: F401
from medseg.models import refinenet as _refinenet  # noqa: F401
from medseg.models import segnet as _segnet  # noqa: F401
from medseg.models import zoo as _zoo  # noqa: F401
from medseg.models.deeplab import DeepLabV3Plus
from medseg.models.fcn import FCN
from medseg.models.gcn import GCN
from medseg.models.pspnet import PSPNet
from medseg.models.refinenet import RefineNet
from medseg.models.registry import (
    available_models,
    build_model,
    count_parameters,
    model_parameters,
    model_settings,
    register_model,
)
from medseg.models.segnet import SegNet
from medseg.models.settings import BackboneSettings
from medseg.models.unet import SegmentationUNet, default_strides

__all__ = [
    "FCN",
    "GCN",
    "BackboneSettings",
    "DeepLabV3Plus",
    "PSPNet",
    "RefineNet",
    "SegNet",
    "SegmentationUNet",
    "available_models",
    "build_model",
    "count_parameters",
    "default_strides",
    "model_parameters",
    "model_settings",
    "register_model",
]
