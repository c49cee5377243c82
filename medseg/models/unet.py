"""U-Net variants for 2D and 3D segmentation, built on MONAI's DynUNet blocks.

Three architectures share one configuration format and one output contract:

* ``unet``: the plain U-Net of Ronneberger et al. (2015, "U-Net: Convolutional Networks for Biomedical
  Image Segmentation") and its 3D form by Cicek et al. (2016, "3D U-Net"), in the nnU-Net configuration
  (Isensee et al. 2021: two 3x3[x3] conv - norm - leaky ReLU per block, strided-conv downsampling,
  transposed-conv upsampling). MONAI ``DynUNet`` with plain blocks.
* ``resunet``: the same with residual blocks (He et al. 2016) in the encoder and bottleneck, i.e.
  nnU-Net's "residual encoder U-Net" (Isensee et al. 2024, "nnU-Net Revisited"). MONAI ``DynUNet`` with
  ``res_block=True`` (MONAI uses residual blocks for the input, down and bottleneck blocks only).
* ``attention_unet``: additive attention gates on the skip connections (Oktay et al. 2018, "Attention
  U-Net: Learning Where to Look for the Pancreas"). MONAI's ``AttentionUnet`` has no deep supervision,
  no choice of normalisation and needs sizes divisible by its strides, so this is ``DynUNet`` whose up
  blocks gate the skip features with MONAI's ``AttentionBlock`` (the gate of ``AttentionUnet``).

What is ours: :class:`SegmentationUNet` pads inputs to a multiple of the network's total stride and crops
the output back (DynUNet alone fails on odd sizes), and returns deep-supervision outputs at their native
resolution as a list (DynUNet stacks them after nearest-neighbour upsampling).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.networks.blocks.dynunet_block import UnetUpBlock
from monai.networks.nets import DynUNet
from monai.networks.nets.attentionunet import AttentionBlock
from torch import nn

from medseg.models.settings import NORMS, BackboneSettings, default_strides

__all__ = ["NORMS", "SegmentationUNet", "default_strides"]

_NAMES = {"plain": "unet", "residual": "resunet", "attention": "attention_unet"}  # for messages


class _AttentionUpBlock(UnetUpBlock):
    """DynUNet up block whose skip features are gated by an additive attention gate (Oktay et al. 2018).

    The gating signal is the upsampled decoder feature, as in MONAI's ``AttentionUnet``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, **kwargs):
        super().__init__(spatial_dims, in_channels, out_channels, **kwargs)
        self.attention = AttentionBlock(
            spatial_dims, f_int=max(1, out_channels // 2), f_g=out_channels, f_l=out_channels
        )

    def forward(self, inp: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.transp_conv(inp)
        gated = self.attention(g=up, x=skip)
        return self.conv_block(torch.cat((up, gated), dim=1))


class _AttentionDynUNet(DynUNet):
    """DynUNet with attention-gated up blocks (one level of inheritance: only the up blocks change)."""

    def get_upsamples(self):
        inp, out = self.filters[1:][::-1], self.filters[:-1][::-1]
        strides, kernel_size = self.strides[1:][::-1], self.kernel_size[1:][::-1]
        return self.get_module_list(
            inp, out, kernel_size, strides, _AttentionUpBlock, self.upsample_kernel_size[::-1],
            trans_bias=self.trans_bias,
        )  # fmt: skip


class SegmentationUNet(nn.Module):
    """A 2D or 3D U-Net (plain, residual-encoder or attention) that accepts any input size.

    Args:
        settings: The shared keys (:class:`~medseg.models.settings.BackboneSettings`); ``depth`` >= 3,
            ``deep_supervision_heads`` in ``1 .. depth - 2`` (default: ``depth - 2``).
        variant: ``"plain"``, ``"residual"`` or ``"attention"``.

    Input ``(B, C_in, H, W[, D])`` of any size. Output ``(B, out_channels, H, W[, D])`` logits; in
    ``train()`` mode with deep supervision, a list ``[full, aux_1, ..., aux_n]`` whose ``aux_i`` has the
    size ``ceil(size / stride_i)`` of decoder level ``i`` (highest resolution first).

    Raises:
        ConfigError: Too many deep-supervision heads.
    """

    def __init__(self, settings: BackboneSettings, *, variant: str = "plain"):
        super().__init__()
        s, depth = settings, settings.depth
        heads = s.heads(_NAMES[variant], max_heads=depth - 2)
        self.strides = [list(level) for level in s.level_strides]
        net_class = _AttentionDynUNet if variant == "attention" else DynUNet
        self.spatial_dims = s.spatial_dims
        self.deep_supervision = s.deep_supervision
        self.net = net_class(
            spatial_dims=s.spatial_dims,
            in_channels=s.in_channels,
            out_channels=s.out_channels,
            kernel_size=[s.kernel_size] * depth,
            strides=self.strides,
            upsample_kernel_size=self.strides[1:],
            filters=list(s.filters),
            dropout=s.dropout or None,
            norm_name=s.norm_name,
            deep_supervision=s.deep_supervision,
            deep_supr_num=max(1, heads),
            res_block=variant == "residual",
        )
        # cumulative stride of the full output and of each auxiliary head (decoder levels 1..heads)
        cumulative = [list(self.strides[0])]
        for stride in self.strides[1:]:
            cumulative.append([a * b for a, b in zip(cumulative[-1], stride)])
        self._total_stride = cumulative[-1]
        self._head_strides = cumulative[1 : heads + 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        size = x.shape[2:]
        pad = [(-n) % s for n, s in zip(size, self._total_stride)]
        if any(pad):
            # F.pad lists the last axis first: (last_lo, last_hi, ..., first_lo, first_hi)
            x = F.pad(x, [p for amount in reversed(pad) for p in (0, amount)])
        out = self.net.output_block(self.net.skip_layers(x))
        out = out[(..., *(slice(0, n) for n in size))]
        if not (self.training and self.deep_supervision):
            return out
        outputs = [out]
        for head, stride in zip(self.net.heads, self._head_strides):
            outputs.append(head[(..., *(slice(0, math.ceil(n / s)) for n, s in zip(size, stride)))])
        return outputs
