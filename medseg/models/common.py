"""What every non-U-Net network of the registry shares: the configuration keys, their validation, stride
bookkeeping, padding to the total stride, and the deep-supervision output contract.

The classic architectures (:mod:`~medseg.models.fcn`, :mod:`~medseg.models.segnet`,
:mod:`~medseg.models.deeplab`) take the U-Nets' keys (``depth``, ``base_filters``, ``max_filters``, ``norm``,
``kernel_size``, ``strides``, ``deep_supervision``, ``deep_supervision_heads``, ``dropout``) with the same
meaning, so a pipeline (and its CPU profile) can switch ``model.name`` without other changes. They share
the U-Nets' output contract (:class:`~medseg.models.unet.SegmentationUNet`): input ``(B, C_in, H, W[, D])``
of any size, output ``(B, C, H, W[, D])`` logits; in ``train()`` mode with deep supervision a list
``[full, aux_1, ..., aux_n]`` whose ``aux_i`` has size ``ceil(size / head_strides[i - 1])``, highest
resolution first. ``_head_strides`` (read by the training loop to size its deep-supervision loss) lists
those strides, and is empty without deep supervision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medseg.errors import ConfigError
from medseg.models.unet import NORMS, default_strides

__all__ = ["Backbone", "crop_outputs", "cumulative_strides", "pad_to_multiple", "resolve_backbone"]


@dataclass(frozen=True)
class Backbone:
    """The resolved encoder layout shared by the classic networks.

    Attributes:
        spatial_dims: 2 or 3.
        strides: ``depth`` per-level strides, each ``spatial_dims`` ints (level 0: the input block).
        filters: Feature maps per level, ``min(base_filters * 2**i, max_filters)``.
        norm: MONAI ``norm_name`` tuple (:data:`medseg.models.unet.NORMS`).
        kernel_size: Convolution kernel size (odd).
        dropout: Dropout probability inside the conv blocks (``None`` for none).
        heads: Number of deep-supervision outputs (0 when deep supervision is off).
    """

    spatial_dims: int
    strides: tuple[tuple[int, ...], ...]
    filters: tuple[int, ...]
    norm: tuple
    kernel_size: int
    dropout: float | None
    heads: int

    @property
    def depth(self) -> int:
        return len(self.filters)

    @property
    def cumulative(self) -> list[tuple[int, ...]]:
        """Cumulative stride of every level's features relative to the input."""
        return cumulative_strides(self.strides)


def cumulative_strides(strides: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """Running product of per-level strides: the stride of each level's features relative to the input."""
    out, current = [], [1] * len(strides[0])
    for s in strides:
        current = [a * b for a, b in zip(current, s)]
        out.append(tuple(current))
    return out


def _check_int(name: str, value, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"model.{name} must be an integer >= {minimum}, got {value!r}")


def resolve_backbone(params: dict, *, min_depth: int, max_heads: int) -> Backbone:
    """Validate the shared keys of ``params`` and resolve them to a :class:`Backbone`.

    Args:
        params: The builder's keyword arguments (``spatial_dims``, ``depth``, ``base_filters``, ...).
        min_depth: Smallest valid ``depth`` of the architecture.
        max_heads: Most deep-supervision outputs the architecture has for this ``depth``.

    Raises:
        ConfigError: A value is invalid; the message names the key.
    """
    dims, depth = params["spatial_dims"], params["depth"]
    _check_int("depth", depth, min_depth)
    _check_int("base_filters", params["base_filters"], 1)
    if params["norm"] not in NORMS:
        raise ConfigError(f"model.norm must be one of {', '.join(NORMS)}, got {params['norm']!r}")
    if params["norm"] == "group" and params["base_filters"] % 8:
        raise ConfigError(f"model.base_filters must be a multiple of 8 for group norm, got {params['base_filters']}")
    k = params["kernel_size"]
    if not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise ConfigError(f"model.kernel_size must be an odd positive integer, got {k!r}")
    if not 0.0 <= float(params["dropout"]) < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {params['dropout']!r}")
    strides = default_strides(depth, dims) if params["strides"] is None else params["strides"]
    if len(strides) != depth:
        raise ConfigError(f"model.strides needs {depth} entries (one per level of model.depth={depth}), got "
                          f"{len(strides)}; give {depth} or set model.strides=null for the default")  # fmt: skip
    resolved = []
    for s in strides:
        s = [s] * dims if isinstance(s, int) else s
        if not isinstance(s, Sequence) or len(s) != dims or not all(isinstance(v, int) and v >= 1 for v in s):
            raise ConfigError(f"model.strides entries must be a positive int or {dims} positive ints, got {s!r}")
        resolved.append(tuple(int(v) for v in s))
    heads = 0
    if params["deep_supervision"]:
        heads = max_heads if params["deep_supervision_heads"] is None else params["deep_supervision_heads"]
        if not isinstance(heads, int) or not 1 <= heads <= max_heads:
            raise ConfigError(f"model.deep_supervision_heads must be in 1..{max_heads} for this model and depth "
                              f"{depth}, got {heads!r}")  # fmt: skip
    max_filters = params["max_filters"]
    max_filters = (320 if dims == 3 else 512) if max_filters is None else max_filters
    _check_int("max_filters", max_filters, 1)
    filters = tuple(min(params["base_filters"] * 2**i, max_filters) for i in range(depth))
    return Backbone(dims, tuple(resolved), filters, NORMS[params["norm"]], k, float(params["dropout"]) or None, heads)


def pad_to_multiple(x: torch.Tensor, multiple: Sequence[int]) -> torch.Tensor:
    """Zero-pad the high end of every spatial axis of ``x`` ``(B, C, *spatial)`` to a multiple of ``multiple``."""
    pad = [(-n) % m for n, m in zip(x.shape[2:], multiple)]
    if not any(pad):
        return x
    # F.pad lists the last axis first: (last_lo, last_hi, ..., first_lo, first_hi)
    return F.pad(x, [p for amount in reversed(pad) for p in (0, amount)])


def crop_outputs(
    full: torch.Tensor, aux: Sequence[torch.Tensor], size: Sequence[int], head_strides: Sequence[Sequence[int]]
) -> list[torch.Tensor]:
    """``[full cropped to size, aux_i cropped to ceil(size / head_strides[i])...]`` (the output contract)."""
    outputs = [full[(..., *(slice(0, n) for n in size))]]
    for out, stride in zip(aux, head_strides):
        outputs.append(out[(..., *(slice(0, math.ceil(n / s)) for n, s in zip(size, stride)))])
    return outputs
