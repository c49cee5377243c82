"""The registered U-Net variants (``unet``, ``resunet``, ``attention_unet``)."""

from __future__ import annotations

from torch import nn

from medseg.models.registry import register_model
from medseg.models.settings import BackboneSettings
from medseg.models.unet import SegmentationUNet

__all__ = ["attention_unet", "resunet", "unet"]


@register_model("unet", min_depth=3)
def unet(settings: BackboneSettings) -> nn.Module:
    """Plain U-Net (Ronneberger et al. 2015; 3D: Cicek et al. 2016); see :class:`SegmentationUNet`."""
    return SegmentationUNet(settings, variant="plain")


@register_model("resunet", min_depth=3)
def resunet(settings: BackboneSettings) -> nn.Module:
    """Residual-encoder U-Net (He et al. 2016 blocks; Isensee et al. 2024); see :class:`SegmentationUNet`."""
    return SegmentationUNet(settings, variant="residual")


@register_model("attention_unet", min_depth=3)
def attention_unet(settings: BackboneSettings) -> nn.Module:
    """Attention U-Net (Oktay et al. 2018); see :class:`SegmentationUNet`."""
    return SegmentationUNet(settings, variant="attention")
