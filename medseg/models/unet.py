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
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks.dynunet_block import UnetUpBlock
from monai.networks.nets import DynUNet
from monai.networks.nets.attentionunet import AttentionBlock
from torch import nn

__all__ = ["NORMS", "SegmentationUNet", "default_strides"]

NORMS = {
    "instance": ("INSTANCE", {"affine": True}),
    "batch": ("BATCH", {}),
    "group": ("GROUP", {"num_groups": 8}),
}


def default_strides(depth: int, spatial_dims: int) -> list[list[int]]:
    """Strides of a ``depth``-level U-Net: 1 for the input block, then 2 along every axis per level."""
    return [[1] * spatial_dims] + [[2] * spatial_dims for _ in range(depth - 1)]


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
        spatial_dims: 2 or 3.
        in_channels: Input channels ``C_in`` (2.5D: number of stacked slices).
        out_channels: Output channels (classes, background included).
        depth: Resolution levels (input block + ``depth - 1`` downsamplings), >= 3.
        base_filters: Feature maps at full resolution; doubled per level up to ``max_filters``.
        max_filters: Cap on feature maps (nnU-Net: 320 in 3D, 512 in 2D).
        norm: ``"instance"`` (nnU-Net), ``"batch"`` or ``"group"`` (8 groups).
        kernel_size: Convolution kernel size (odd).
        strides: Per-level strides, ``depth`` entries of an int or ``spatial_dims`` ints (anisotropic data:
            e.g. ``[[1,1,1],[2,2,1],[2,2,2],...]``); ``None``: :func:`default_strides`.
        deep_supervision: Return auxiliary lower-resolution outputs in ``train()`` mode.
        deep_supervision_heads: Number of auxiliary outputs (``1 .. depth - 2``).
        dropout: Dropout probability in every conv block.
        variant: ``"plain"``, ``"residual"`` or ``"attention"``.

    Input ``(B, C_in, H, W[, D])`` of any size. Output ``(B, out_channels, H, W[, D])`` logits; in
    ``train()`` mode with deep supervision, a list ``[full, aux_1, ..., aux_n]`` whose ``aux_i`` has the
    size ``ceil(size / stride_i)`` of decoder level ``i`` (highest resolution first).
    """

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        depth: int = 5,
        base_filters: int = 32,
        max_filters: int | None = None,
        norm: str = "instance",
        kernel_size: int = 3,
        strides: Sequence[int | Sequence[int]] | None = None,
        deep_supervision: bool = False,
        deep_supervision_heads: int | None = None,
        dropout: float = 0.0,
        variant: str = "plain",
    ):
        """Many parameters: the registry's keyword contract: each is a `model.*` pipeline key, checked by name."""
        super().__init__()
        strides = default_strides(depth, spatial_dims) if strides is None else strides
        self.strides = [[int(s)] * spatial_dims if isinstance(s, int) else [int(v) for v in s] for s in strides]
        max_filters = (320 if spatial_dims == 3 else 512) if max_filters is None else max_filters
        filters = [min(base_filters * 2**i, max_filters) for i in range(depth)]
        heads = max(1, depth - 2) if deep_supervision_heads is None else deep_supervision_heads
        net_class = _AttentionDynUNet if variant == "attention" else DynUNet
        self.spatial_dims = spatial_dims
        self.deep_supervision = deep_supervision
        self.net = net_class(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=[kernel_size] * depth,
            strides=self.strides,
            upsample_kernel_size=self.strides[1:],
            filters=filters,
            dropout=dropout or None,
            norm_name=NORMS[norm],
            deep_supervision=deep_supervision,
            deep_supr_num=heads,
            res_block=variant == "residual",
        )
        # cumulative stride of the full output and of each auxiliary head (decoder levels 1..heads)
        cumulative = [list(self.strides[0])]
        for s in self.strides[1:]:
            cumulative.append([a * b for a, b in zip(cumulative[-1], s)])
        self._total_stride = cumulative[-1]
        self._head_strides = cumulative[1 : heads + 1] if deep_supervision else []

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
