"""Segmentation networks: 2D/3D U-Net variants behind a name -> builder registry.

Example:
    >>> from medseg.models import build_model
    >>> net = build_model({"name": "unet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3})
"""

from medseg.models import zoo as _zoo  # noqa: F401  (registers the built-in models)
from medseg.models.registry import (
    available_models,
    build_model,
    count_parameters,
    model_parameters,
    register_model,
)
from medseg.models.unet import SegmentationUNet, default_strides

__all__ = [
    "SegmentationUNet",
    "available_models",
    "build_model",
    "count_parameters",
    "default_strides",
    "model_parameters",
    "register_model",
]
