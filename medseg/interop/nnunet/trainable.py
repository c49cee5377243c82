"""An nnU-Net v2 network trained (fine-tuned) on medseg's grid: :class:`NnUNetTrainable`.

medseg's training cache and predictor hold images on the canonical (R, A, S) grid, ``(B, C, X, Y, Z)``;
an nnU-Net network was trained on its reader's array, the file's voxel axes reversed and then permuted by
``transpose_forward`` (:mod:`~medseg.interop.nnunet.plan`). :class:`NnUNetTrainable` wraps the network
``dynamic-network-architectures`` builds from ``plans.json`` (:func:`~medseg.interop.nnunet.build_nnunet_network`,
never a copy) and permutes the axes on the way in and back on the way out, so each pretrained kernel sees
the axes (and the anisotropic strides) it learned on. Flips are not undone: a scan stored L-P-S reaches
nnU-Net unflipped and medseg flipped to R-A-S, which fine-tuning absorbs.

The network is built with deep supervision: in ``train()`` mode (when ``deep_supervision``) the forward
returns ``[full, aux_1, ..., aux_n]`` at decreasing resolution, highest first, as
:class:`medseg.models.unet.SegmentationUNet` does and :class:`medseg.losses.DeepSupervisionLoss` expects;
in ``eval()`` mode one tensor. Inputs of any size are zero-padded to a multiple of the total stride and the
outputs cropped back.

Its ``model_config`` (saved in every checkpoint of a fine-tuned run, so :class:`medseg.inference.Predictor`
rebuilds it) is plain JSON::

    {"name": "nnunet", "spatial_dims": 3, "in_channels": 1, "out_channels": K, "deep_supervision": true,
     "architecture": {...plans.json's architecture section...}, "axes": [2, 1, 0]}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medseg.errors import DataError
from medseg.interop.nnunet.network import build_nnunet_network

__all__ = ["NNUNET_MODEL_NAME", "NnUNetTrainable", "build_trainable_network", "medseg_axes"]

#: ``model_config["name"]`` of a fine-tuned nnU-Net network.
NNUNET_MODEL_NAME = "nnunet"


def medseg_axes(transpose_forward: Sequence[int]) -> tuple[int, ...]:
    """For each axis of nnU-Net's array, the canonical medseg axis it comes from (``2 - transpose_forward[a]``:
    nnU-Net reverses the file's axes, then permutes them)."""
    return tuple(2 - int(a) for a in transpose_forward)


class NnUNetTrainable(nn.Module):
    """A ``dynamic-network-architectures`` U-Net on medseg's ``(B, C, X, Y, Z)`` grid (see the module doc).

    Args:
        network: The U-Net, built with ``deep_supervision=True``.
        axes: ``axes[a]``: the medseg spatial axis that nnU-Net's axis ``a`` is.
        deep_supervision: Return the auxiliary outputs in ``train()`` mode.

    Input ``(B, C, X, Y, Z)`` of any size; output ``(B, K, X, Y, Z)`` logits, or in ``train()`` mode with deep
    supervision a list whose ``aux_i`` has the size ``ceil(size / stride_i)`` of decoder level ``i``.
    """

    def __init__(self, network: nn.Module, axes: Sequence[int], *, deep_supervision: bool = True):
        super().__init__()
        if sorted(axes) != [0, 1, 2]:
            raise ValueError(f"axes must be a permutation of 0, 1, 2, got {list(axes)}")
        self.net = network
        self.axes = tuple(int(a) for a in axes)
        self.deep_supervision = deep_supervision
        strides = [[int(s)] * 3 if isinstance(s, int) else [int(v) for v in s] for s in network.encoder.strides]
        cumulative = [strides[0]]
        for s in strides[1:]:
            cumulative.append([a * b for a, b in zip(cumulative[-1], s)])
        # in medseg's axis order: the stride along medseg axis axes[a] is nnU-Net's along a
        self._cumulative = [self._to_medseg(c) for c in cumulative]
        self._total_stride = self._cumulative[-1]
        self._head_strides = self._cumulative[1:-1] if deep_supervision else []

    def _to_medseg(self, values: Sequence[int]) -> list[int]:
        out = [0, 0, 0]
        for a, axis in enumerate(self.axes):
            out[axis] = values[a]
        return out

    def encoder(self) -> nn.Module:
        """The encoder (the part a frozen warm-up keeps fixed)."""
        return self.net.encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        size = tuple(x.shape[2:])
        pad = [(-n) % s for n, s in zip(size, self._total_stride)]
        if any(pad):
            x = F.pad(x, [p for amount in reversed(pad) for p in (0, amount)])
        forward = (0, 1, *(2 + a for a in self.axes))
        backward = (0, 1, *(2 + self.axes.index(d) for d in range(3)))
        supervised = self.training and self.deep_supervision
        self.net.decoder.deep_supervision = supervised
        out = self.net(x.permute(forward).contiguous())
        outputs = out if supervised else [out]
        cropped = []
        for logits, stride in zip(outputs, self._cumulative[: len(outputs)]):
            logits = logits.permute(backward)
            cropped.append(logits[(..., *(slice(0, math.ceil(n / s)) for n, s in zip(size, stride)))])
        return cropped if supervised else cropped[0]


def build_trainable_network(model_config: Mapping[str, Any], *, source=None) -> NnUNetTrainable:
    """The (untrained) :class:`NnUNetTrainable` of a ``model_config`` (the module doc's format).

    Raises:
        DataError: A key missing or of the wrong kind, or an architecture outside the allow-lists.
    """
    try:
        architecture = model_config["architecture"]
        axes = [int(a) for a in model_config["axes"]]
        in_channels, out_channels = int(model_config["in_channels"]), int(model_config["out_channels"])
        supervised = bool(model_config.get("deep_supervision", True))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"nnU-Net model_config lacks or mangles {exc}", path=source) from None
    if sorted(axes) != [0, 1, 2] or model_config.get("spatial_dims", 3) != 3:
        raise DataError(f"nnU-Net model_config: axes {axes} must permute 0, 1, 2 of a 3D network", path=source)
    network = build_nnunet_network(architecture, in_channels=in_channels, num_classes=out_channels, source=source,
                                   deep_supervision=True)
    return NnUNetTrainable(network, axes, deep_supervision=supervised)
