"""The backbone settings every network of the registry takes: one frozen object, one validator.

Every builder (U-Nets, FCN, SegNet, DeepLab v3+, PSPNet, RefineNet, GCN) is called as
``builder(settings, **own_options)``: the shared ``model.*`` keys below travel in :class:`BackboneSettings`,
checked once in its ``__post_init__`` (the pipeline rules, :mod:`medseg.training.rules`, build the same
object to check a pipeline's ``model`` section). What is an architecture's own is checked by the registry
(its smallest ``depth``, given to :func:`~medseg.models.registry.register_model`) and by its builder (how
many deep-supervision heads it has, :meth:`BackboneSettings.heads`; its own options).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from medseg.errors import ConfigError

__all__ = ["NORMS", "SETTINGS_KEYS", "BackboneSettings", "default_strides"]

#: ``norm`` -> MONAI ``norm_name`` tuple.
NORMS = {
    "instance": ("INSTANCE", {"affine": True}),
    "batch": ("BATCH", {}),
    "group": ("GROUP", {"num_groups": 8}),
}


def default_strides(depth: int, spatial_dims: int) -> list[list[int]]:
    """Strides of a ``depth``-level U-Net: 1 for the input block, then 2 along every axis per level."""
    return [[1] * spatial_dims] + [[2] * spatial_dims for _ in range(depth - 1)]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(key: str, value: Any, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        raise ConfigError(f"model.{key} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class BackboneSettings:
    """The shared ``model.*`` keys, validated when built (a :class:`~medseg.errors.ConfigError` naming the key).

    Attributes:
        spatial_dims: 2 or 3.
        in_channels: Input channels ``C_in`` (2.5D: number of stacked slices).
        out_channels: Output channels ``C`` (classes, background included).
        depth: Resolution levels (the input level + ``depth - 1`` downsamplings).
        base_filters: Feature maps at full resolution; doubled per level up to ``max_filters``.
        max_filters: Cap on feature maps; ``None``: 320 in 3D, 512 in 2D (nnU-Net).
        norm: ``"instance"`` (nnU-Net), ``"batch"`` or ``"group"`` (8 groups).
        kernel_size: Convolution kernel size (odd).
        strides: Per-level strides, ``depth`` entries of an int or ``spatial_dims`` ints (anisotropic data:
            e.g. ``[[1,1,1],[2,2,1],[2,2,2],...]``); ``None``: :func:`default_strides`.
        deep_supervision: Return auxiliary lower-resolution outputs in ``train()`` mode.
        deep_supervision_heads: Number of auxiliary outputs; ``None``: as many as the network has.
        dropout: Dropout probability in the conv blocks, in ``[0, 1)``.
    """

    spatial_dims: int
    in_channels: int
    out_channels: int
    depth: int = 5
    base_filters: int = 32
    max_filters: int | None = None
    norm: str = "instance"
    kernel_size: int = 3
    strides: Sequence[int | Sequence[int]] | None = None
    deep_supervision: bool = False
    deep_supervision_heads: int | None = None
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self._check_shape()
        self._check_layers()
        self._check_strides()
        if self.strides is not None:  # lists from YAML become tuples: the object stays immutable
            object.__setattr__(self, "strides", tuple(s if _is_int(s) else tuple(s) for s in self.strides))
        heads = self.deep_supervision_heads
        if not isinstance(self.deep_supervision, bool):
            raise ConfigError(f"model.deep_supervision must be true or false, got {self.deep_supervision!r}")
        if heads is not None and (not _is_int(heads) or heads < 1):
            raise ConfigError(f"model.deep_supervision_heads must be a positive integer or null, got {heads!r}")

    def _check_shape(self) -> None:
        if self.spatial_dims not in (2, 3) or isinstance(self.spatial_dims, bool):
            raise ConfigError(f"model.spatial_dims must be 2 or 3, got {self.spatial_dims!r}")
        for key in ("in_channels", "out_channels"):
            value = getattr(self, key)
            if not _is_int(value) or value < 1:
                raise ConfigError(f"model.{key} must be a positive integer, got {value!r}")
        _integer("depth", self.depth, 1)
        _integer("base_filters", self.base_filters, 1)
        if self.max_filters is not None and (not _is_int(self.max_filters) or self.max_filters < self.base_filters):
            raise ConfigError(f"model.max_filters must be >= model.base_filters ({self.base_filters}) or null, "
                              f"got {self.max_filters!r}")  # fmt: skip

    def _check_layers(self) -> None:
        if self.norm not in NORMS:
            raise ConfigError(f"model.norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.norm == "group" and any(f % 8 for f in self.filters):
            raise ConfigError(f"model.base_filters and model.max_filters must be multiples of 8 for group norm, "
                              f"got {self.base_filters} and {self.max_filters}")  # fmt: skip
        k = self.kernel_size
        if not _is_int(k) or k < 1 or k % 2 == 0:
            raise ConfigError(f"model.kernel_size must be an odd positive integer, got {k!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout!r}")

    def _check_strides(self) -> None:
        if self.strides is None:
            return
        if isinstance(self.strides, (str, bytes)) or not isinstance(self.strides, Sequence):
            raise ConfigError(f"model.strides must be a list of {self.depth} entries or null, got {self.strides!r}")
        for i, s in enumerate(self.strides):
            values = [s] if _is_int(s) else s
            if (not isinstance(values, Sequence) or len(values) not in (1, self.spatial_dims)
                    or not all(_is_int(v) and v >= 1 for v in values)):  # fmt: skip
                raise ConfigError(f"model.strides[{i}] must be a positive integer or {self.spatial_dims} of them, "
                                  f"got {s!r}")  # fmt: skip
        if len(self.strides) != self.depth:
            n = self.depth
            raise ConfigError(f"model.strides needs {n} entries (one per level of model.depth={n}), got "
                              f"{len(self.strides)}; give {n} or set model.strides=null for the default")  # fmt: skip

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> BackboneSettings:
        """The settings of a ``model_config``'s shared keys (others ignored)."""
        return cls(**{k: v for k, v in values.items() if k in SETTINGS_KEYS})

    @property
    def level_strides(self) -> tuple[tuple[int, ...], ...]:
        """``depth`` per-level strides, ``spatial_dims`` ints each (the defaults where ``strides`` is None)."""
        strides = default_strides(self.depth, self.spatial_dims) if self.strides is None else self.strides
        expanded = ([s] if _is_int(s) else list(s) for s in strides)
        return tuple(tuple(v * self.spatial_dims if len(v) == 1 else v) for v in expanded)

    @property
    def filters(self) -> tuple[int, ...]:
        """Feature maps per level, ``min(base_filters * 2**i, max_filters)``."""
        cap = (320 if self.spatial_dims == 3 else 512) if self.max_filters is None else self.max_filters
        return tuple(min(self.base_filters * 2**i, cap) for i in range(self.depth))

    @property
    def norm_name(self) -> tuple:
        """MONAI ``norm_name`` tuple of :attr:`norm`."""
        return NORMS[self.norm]

    def heads(self, model: str, *, max_heads: int) -> int:
        """The number of deep-supervision outputs (0 without deep supervision) of a network with at most
        ``max_heads`` (``deep_supervision_heads=None``: all of them).

        Raises:
            ConfigError: ``deep_supervision_heads`` above ``max_heads``.
        """
        heads = self.deep_supervision_heads
        if not self.deep_supervision:
            return 0
        if heads is not None and heads > max_heads:
            raise ConfigError(f"model.deep_supervision_heads must be in 1..{max_heads} for {model} with depth "
                              f"{self.depth}, got {heads}")  # fmt: skip
        return max_heads if heads is None else heads


#: The shared keys (the fields of :class:`BackboneSettings`).
SETTINGS_KEYS = tuple(f.name for f in fields(BackboneSettings))
