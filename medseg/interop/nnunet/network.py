"""The network an nnU-Net v2 configuration describes, built with ``dynamic-network-architectures``.

nnU-Net builds its networks from ``plans.json``'s ``configurations[name]["architecture"]``: a class name
(``network_class_name``), its keyword arguments (``arch_kwargs``) and the keywords whose values name
classes (``_kw_requires_import``: convolution, normalisation, dropout, non-linearity). nnU-Net resolves
those names with :func:`pydoc.locate`, i.e. it imports whatever dotted path the file names. Here a name
is resolved only from allow-lists: the U-Nets of ``dynamic_network_architectures.architectures.unet``
(:data:`ARCHITECTURES`; the package nnU-Net itself builds them with, never a copy) and the ``torch.nn``
layers of :data:`LAYERS`. Anything else is one :class:`~medseg.errors.DataError` line.

The network is built without deep supervision unless asked (as nnU-Net predicts), so it maps ``(B, C, *patch)`` to
logits ``(B, K, *patch)``, a plain ``torch.nn.Module`` that runtimes can wrap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from medseg.errors import DataError

__all__ = ["ARCHITECTURES", "LAYERS", "build_nnunet_network"]

#: ``network_class_name`` (its last dotted part) -> class name in ``dynamic_network_architectures``.
ARCHITECTURES = ("PlainConvUNet", "ResidualEncoderUNet")

#: ``torch.nn`` classes an architecture keyword may name (``torch.nn.X`` or ``torch.nn.modules.<m>.X``).
LAYERS = ("Conv1d", "Conv2d", "Conv3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "BatchNorm1d",
          "BatchNorm2d", "BatchNorm3d", "GroupNorm", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "LeakyReLU",
          "ReLU", "PReLU", "ELU", "GELU")


def _architecture(name: Any, source) -> type:
    from dynamic_network_architectures.architectures import unet

    short = str(name).rsplit(".", 1)[-1]
    prefix = str(name).rpartition(".")[0]
    if short not in ARCHITECTURES or prefix not in ("", "dynamic_network_architectures.architectures.unet"):
        raise DataError(f"plans architecture {name!r} cannot be built here (supported: "
                        f"{', '.join(ARCHITECTURES)} of dynamic_network_architectures)", path=source)
    return getattr(unet, short)


def _layer(name: Any, key: str, source) -> type | None:
    if name is None:
        return None
    text = str(name)
    short, prefix = text.rsplit(".", 1)[-1], text.rpartition(".")[0]
    if short not in LAYERS or not (prefix == "torch.nn" or prefix.startswith("torch.nn.modules.")):
        raise DataError(f"plans architecture {key}={name!r} is not an allowed torch.nn layer", path=source)
    return getattr(torch.nn, short)


def build_nnunet_network(architecture: Mapping[str, Any], *, in_channels: int, num_classes: int,
                         source: str | os.PathLike | None = None, deep_supervision: bool = False) -> torch.nn.Module:
    """Build the (untrained) network of an nnU-Net v2 configuration's ``architecture`` section.

    Args:
        architecture: ``{"network_class_name": ..., "arch_kwargs": {...}, "_kw_requires_import": [...]}``.
        in_channels: Input channels (``dataset.json``'s ``channel_names``).
        num_classes: Output channels (segmentation heads: the labels, background included).
        source: ``plans.json``, for messages.
        deep_supervision: Build the decoder's auxiliary outputs (for training: :mod:`.trainable`); the
            parameters are the same either way.

    Raises:
        DataError: An architecture or layer outside the allow-lists, or arguments the class rejects.
    """
    if not isinstance(architecture, Mapping) or "network_class_name" not in architecture:
        raise DataError("plans configuration has no architecture.network_class_name (nnU-Net older than 2.4?)",
                        path=source)
    network_class = _architecture(architecture["network_class_name"], source)
    kwargs = dict(architecture.get("arch_kwargs") or {})
    for key in architecture.get("_kw_requires_import") or ():
        kwargs[key] = _layer(kwargs.get(key), key, source)
    kwargs["deep_supervision"] = deep_supervision
    try:
        return network_class(input_channels=in_channels, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError, AssertionError, KeyError) as exc:
        raise DataError(f"plans architecture {network_class.__name__} rejects its arguments ({exc})",
                        path=source) from None
