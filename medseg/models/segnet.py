"""SegNet in 2D and 3D (registered as ``segnet``).

Badrinarayanan, Kendall and Cipolla, "SegNet: A Deep Convolutional Encoder-Decoder Architecture for Image
Segmentation", 2015 (arXiv:1511.00561; IEEE TPAMI 2017). The decoder upsamples with the *max-pooling
indices* of the matching encoder level (max unpooling: each value returns to where its maximum came
from, the rest is zero) and densifies the sparse map with convolutions; nothing is concatenated from the
encoder, so the decoder stores only the indices, not the feature maps (section 3).

Our adaptation: ``depth`` levels of the U-Nets' block (MONAI ``UnetBasicBlock``: two conv - norm - leaky
ReLU) with a max pooling by the level's stride before every level but the first (whose stride must be 1;
anisotropic strides such as ``[2, 2, 1]`` pool in-plane only). The decoder mirrors it: at level ``i`` a
block maps ``filters[i]`` to ``filters[i - 1]`` channels, then ``MaxUnpool`` with the indices of pooling
``i`` returns to level
``i - 1``; a final block and a 1x1 convolution give the scores. The paper's VGG-16 encoder has 13 conv
layers in 5 pooled stages (``depth=6`` here: 5 poolings, two convs per stage). MONAI has no SegNet; its
``MaxUnpool`` counterpart is PyTorch's, which this uses.

Deep supervision (``train()`` mode): a 1x1 score head on the decoder block of levels ``1 .. heads``
(before unpooling), highest resolution first.
"""

from __future__ import annotations

import torch
from monai.networks.blocks.dynunet_block import UnetBasicBlock
from torch import nn

from medseg.errors import ConfigError
from medseg.models.common import Backbone, crop_outputs, pad_to_multiple, resolve_backbone
from medseg.models.registry import register_model
from medseg.models.settings import BackboneSettings

__all__ = ["SegNet", "segnet"]

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_UNPOOL = {2: nn.MaxUnpool2d, 3: nn.MaxUnpool3d}


class SegNet(nn.Module):
    """SegNet (see the module docstring).

    Args:
        backbone: Resolved encoder layout (:func:`medseg.models.common.resolve_backbone`).
        in_channels: Input channels ``C_in`` (2.5D: stacked slices).
        out_channels: Classes ``C`` (background included).

    Input ``(B, C_in, H, W[, D])`` of any size (zero-padded to a multiple of the total stride inside);
    output ``(B, C, H, W[, D])`` logits, or the deep-supervision list of :mod:`medseg.models.common`.
    """

    def __init__(self, backbone: Backbone, *, in_channels: int, out_channels: int):
        super().__init__()
        b, dims = backbone, backbone.spatial_dims
        f = b.filters

        def block(cin: int, cout: int) -> nn.Module:
            return UnetBasicBlock(dims, cin, cout, b.kernel_size, 1, b.norm, dropout=b.dropout)

        self.encoder = nn.ModuleList(block(cin, cout) for cin, cout in zip([in_channels, *f[:-1]], f))
        self.pools = nn.ModuleList(_POOL[dims](s, s, return_indices=True) for s in b.strides[1:])
        self.unpools = nn.ModuleList(_UNPOOL[dims](s, s) for s in b.strides[1:])
        # decoder block of level i (i = 1 .. depth - 1) maps filters[i] -> filters[i - 1]; then level 0's block
        self.decoder = nn.ModuleList(block(f[i], f[i - 1]) for i in range(1, b.depth))
        self.final = block(f[0], f[0])
        self.output = _CONV[dims](f[0], out_channels, kernel_size=1)
        self.heads = nn.ModuleList(_CONV[dims](f[i - 1], out_channels, kernel_size=1) for i in range(1, b.heads + 1))
        self._total_stride = b.cumulative[-1]
        self._head_strides = b.cumulative[1 : b.heads + 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        size = x.shape[2:]
        h = self.encoder[0](pad_to_multiple(x, self._total_stride))
        indices, sizes = [], []
        for pool, block in zip(self.pools, self.encoder[1:]):
            sizes.append(h.shape[2:])
            h, idx = pool(h)
            indices.append(idx)
            h = block(h)
        decoded = {}
        for level in range(len(self.decoder), 0, -1):  # deepest first
            h = self.decoder[level - 1](h)
            decoded[level] = h
            h = self.unpools[level - 1](h, indices[level - 1], output_size=sizes[level - 1])
        full = self.output(self.final(h))
        if not (self.training and self._head_strides):
            return crop_outputs(full, [], size, [])[0]
        aux = [head(decoded[level]) for level, head in enumerate(self.heads, start=1)]
        return crop_outputs(full, aux, size, self._head_strides)


@register_model("segnet", min_depth=2, depth=6)
def segnet(settings: BackboneSettings) -> nn.Module:
    """SegNet (Badrinarayanan et al. 2015): pooling indices reused for unpooling; see :class:`SegNet`."""
    backbone = resolve_backbone(settings, "segnet", max_heads=max(1, settings.depth - 1))
    if max(backbone.strides[0]) > 1:
        raise ConfigError(f"model.strides[0] must be 1 for segnet (the input level is not pooled), got "
                          f"{list(backbone.strides[0])}")  # fmt: skip
    return SegNet(backbone, in_channels=settings.in_channels, out_channels=settings.out_channels)
