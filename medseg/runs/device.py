"""The one device rule shared by training and inference: ``"auto"`` means CUDA when available."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The :class:`torch.device` to run on.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), or anything :class:`torch.device` accepts
            (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a device).

    Returns:
        The device; ``str()`` of it is the plain name a config stores (``"cpu"``, ``"cuda:1"``).

    Raises:
        ConfigError: ``device`` is not a device name, or names CUDA while CUDA is not available.
    """
    import torch  # here, so that importing medseg's config (``medseg --help``) does not load torch

    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"invalid device {device!r} ({exc})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available (use device=cpu or auto)")
    return resolved
