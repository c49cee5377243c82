"""DeepLab v3+ in 2D and 3D (registered as ``deeplabv3plus``).

Chen, Zhu, Papandreou, Schroff and Adam, "Encoder-Decoder with Atrous Separable Convolution for Semantic
Image Segmentation", ECCV 2018 (arXiv:1802.02611), on DeepLab v3 (Chen et al. 2017, arXiv:1706.05587):

* **atrous backbone**: the deepest ``atrous_levels`` levels keep their resolution (stride 1) and dilate
  their convolutions by the stride they replaced, per axis, so the features stay at the *output stride*
  (paper: 16, i.e. one level of a stride-32 backbone made atrous);
* **ASPP** (atrous spatial pyramid pooling): a 1x1 convolution, one ``kernel_size`` convolution per rate
  in ``aspp_rates`` (paper: 6, 12, 18 at output stride 16; each rate an int or one int per axis, e.g.
  ``[6, 6, 1]`` for thick 3D slices) and *image pooling* (global average, 1x1 convolution, broadcast
  back), concatenated and projected by a 1x1 convolution;
* **decoder**: the ASPP output upsampled (bilinear/trilinear) to the ``low_level`` encoder level (paper:
  stride 4), concatenated with that level's features reduced by a 1x1 convolution to 48/256 of the ASPP
  width, refined by a conv block, scored by a 1x1 convolution and upsampled (bilinear/trilinear) to the
  input size.

Our adaptation: the backbone is the residual encoder of ``resunet`` (MONAI ``UnetResBlock``, strided
first convolution) instead of Xception/ResNet-101; MONAI's blocks take no dilation, so the atrous levels
use :class:`DilatedResBlock`, the same block with dilated convolutions. The image-pooling branch has no
normalisation (one value per channel: instance norm would zero it, batch norm fails at batch size 1).
Depthwise-separable convolutions (the paper's Xception detail) are not used. MONAI's ``SimpleASPP`` has no
image pooling and no per-axis rates, so the ASPP is ours.

Deep supervision (``train()`` mode): one auxiliary 1x1 score head on the ASPP output (at the output
stride).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks.dynunet_block import UnetBasicBlock
from monai.networks.layers.utils import get_act_layer
from torch import nn

from medseg.errors import ConfigError
from medseg.models.blocks import ACT, CONV, DilatedResBlock, conv_norm_act, residual_encoder, upsample_to
from medseg.models.common import Backbone, crop_outputs, pad_to_multiple, resolve_backbone
from medseg.models.registry import register_model
from medseg.models.settings import BackboneSettings

__all__ = ["ASPP", "DeepLabV3Plus", "DilatedResBlock", "deeplabv3plus"]


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with image pooling (Chen et al. 2017, section 3.3).

    Input ``(B, cin, *n)``; output ``(B, cout, *n)``: ``[1x1, rate_1, ..., rate_R, image pooling]`` branches
    of ``cout`` channels each, concatenated, then 1x1 conv - norm - act (and dropout).
    """

    def __init__(self, dims: int, cin: int, cout: int, *, rates: Sequence, kernel_size: int, norm: tuple,
                 dropout: float | None):  # fmt: skip
        super().__init__()
        self.branches = nn.ModuleList([conv_norm_act(dims, cin, cout, norm)])
        self.branches.extend(conv_norm_act(dims, cin, cout, norm, kernel_size=kernel_size, dilation=r) for r in rates)
        pool = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.image_pooling = nn.Sequential(pool, CONV[dims](cin, cout, 1), get_act_layer(ACT))
        self.project = nn.Sequential(
            conv_norm_act(dims, (len(rates) + 2) * cout, cout, norm), nn.Dropout(dropout or 0.0)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.image_pooling(x).expand(-1, -1, *x.shape[2:])
        return self.project(torch.cat([*(branch(x) for branch in self.branches), pooled], dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLab v3+ (see the module docstring).

    Args:
        backbone: Resolved encoder layout (:func:`medseg.models.common.resolve_backbone`).
        in_channels: Input channels ``C_in`` (2.5D: stacked slices).
        out_channels: Classes ``C`` (background included).
        atrous_levels: Deepest levels run at stride 1 with dilation instead of downsampling.
        aspp_rates: ASPP dilation rates, each an int or ``spatial_dims`` ints.
        aspp_filters: ASPP and decoder width.
        low_level: Encoder level whose features the decoder fuses.

    Input ``(B, C_in, H, W[, D])`` of any size (zero-padded to a multiple of the output stride inside);
    output ``(B, C, H, W[, D])`` logits, or the deep-supervision list of :mod:`medseg.models.common`.
    """

    def __init__(self, backbone: Backbone, *, in_channels: int, out_channels: int, atrous_levels: int,
                 aspp_rates: Sequence, aspp_filters: int, low_level: int):  # fmt: skip
        super().__init__()
        b, dims, f = backbone, backbone.spatial_dims, backbone.filters
        last_strided = b.depth - 1 - atrous_levels
        self.encoder = residual_encoder(b, in_channels, atrous_levels=atrous_levels)
        self.aspp = ASPP(dims, f[-1], aspp_filters, rates=aspp_rates, kernel_size=b.kernel_size, norm=b.norm,
                         dropout=b.dropout)  # fmt: skip
        low_filters = max(1, round(aspp_filters * 48 / 256))
        self.low_level = low_level
        self.reduce = conv_norm_act(dims, f[low_level], low_filters, b.norm)
        self.refine = UnetBasicBlock(dims, aspp_filters + low_filters, aspp_filters, b.kernel_size, 1, b.norm)
        self.classifier = CONV[dims](aspp_filters, out_channels, 1)
        self.aux_head = CONV[dims](aspp_filters, out_channels, 1) if b.heads else None
        self._total_stride = b.cumulative[last_strided]  # the output stride
        self._head_strides = [self._total_stride] if b.heads else []

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        size = x.shape[2:]
        h = pad_to_multiple(x, self._total_stride)
        padded_size = h.shape[2:]
        for level, block in enumerate(self.encoder):
            h = block(h)
            if level == self.low_level:
                low = h
        context = self.aspp(h)
        fused = torch.cat([upsample_to(context, low.shape[2:]), self.reduce(low)], dim=1)
        full = upsample_to(self.classifier(self.refine(fused)), padded_size)
        if not (self.training and self._head_strides):
            return crop_outputs(full, [], size, [])[0]
        return crop_outputs(full, [self.aux_head(context)], size, self._head_strides)


def _check(p: dict, backbone: Backbone) -> list[tuple[int, ...]]:
    """Validate the DeepLab keys; return the ASPP rates as per-axis tuples."""
    depth, dims = backbone.depth, backbone.spatial_dims
    atrous = p["atrous_levels"]
    if not isinstance(atrous, int) or isinstance(atrous, bool) or not 0 <= atrous <= depth - 2:
        raise ConfigError(f"model.atrous_levels must be an integer in 0..{depth - 2} for depth {depth}, got {atrous!r}")
    low = p["low_level"]
    if not isinstance(low, int) or isinstance(low, bool) or not 0 <= low < depth - 1 - atrous:
        raise ConfigError(f"model.low_level must be an encoder level in 0..{depth - 2 - atrous} (above the output "
                          f"stride), got {low!r}")  # fmt: skip
    if p["aspp_filters"] is not None and (not isinstance(p["aspp_filters"], int) or p["aspp_filters"] < 1):
        raise ConfigError(f"model.aspp_filters must be a positive integer or null, got {p['aspp_filters']!r}")
    rates = []
    for r in p["aspp_rates"] or []:
        r = [r] * dims if isinstance(r, int) else r
        if not isinstance(r, Sequence) or len(r) != dims or not all(isinstance(v, int) and v >= 1 for v in r):
            raise ConfigError(f"model.aspp_rates entries must be a positive int or {dims} positive ints, got {r!r}")
        rates.append(tuple(r))
    if not rates:
        raise ConfigError(f"model.aspp_rates needs at least one rate, got {p['aspp_rates']!r}")
    return rates


@register_model("deeplabv3plus", min_depth=3, depth=6)
def deeplabv3plus(
    settings: BackboneSettings,
    *,
    atrous_levels: int = 1,
    aspp_rates: Sequence = (6, 12, 18),
    aspp_filters: int | None = None,
    low_level: int | None = None,
) -> nn.Module:
    """DeepLab v3+ (Chen et al. 2018): atrous backbone, ASPP with image pooling, low-level decoder; see
    :class:`DeepLabV3Plus`. ``aspp_filters=None``: the deepest level's width; ``low_level=None``: level 2
    (stride 4 with the default strides, as in the paper) or the deepest level above the output stride if
    that is shallower."""
    backbone = resolve_backbone(settings, "deeplabv3plus", max_heads=1)
    depth = settings.depth
    if low_level is None and isinstance(atrous_levels, int):
        low_level = max(0, min(2, depth - 2 - atrous_levels))
    params = {"atrous_levels": atrous_levels, "aspp_rates": aspp_rates, "aspp_filters": aspp_filters,
              "low_level": low_level}  # fmt: skip
    rates = _check(params, backbone)
    return DeepLabV3Plus(
        backbone, in_channels=settings.in_channels, out_channels=settings.out_channels, atrous_levels=atrous_levels,
        aspp_rates=rates, aspp_filters=aspp_filters or backbone.filters[-1], low_level=low_level,
    )  # fmt: skip
