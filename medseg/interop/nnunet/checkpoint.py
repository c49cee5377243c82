"""nnU-Net v2 checkpoints read without running pickled code: ``torch.load(weights_only=True)`` with an
explicit allow-list.

nnU-Net's ``save_checkpoint`` pickles a dict of the network's state dict, the optimizer state, its training
log (NumPy scalars among the floats), the trainer's init arguments (plans, dataset.json, a ``torch.device``)
and ``inference_allowed_mirroring_axes``. PyTorch's restricted unpickler reads plain types and tensors
only; the few NumPy types such a file holds are allowed here by name (:data:`NNUNET_SAFE_GLOBALS`: measured
on checkpoints written by nnunetv2 2.8.1 under NumPy 2, plus NumPy 1's name of the scalar constructor that
older checkpoints such as TotalSegmentator's use). Anything else (a class whose ``__reduce__`` would run
code) is refused with one line; there is no fallback to ``weights_only=False``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.errors import DataError

__all__ = ["NNUNET_SAFE_GLOBALS", "load_nnunet_checkpoint"]


def _numpy_scalar_constructors() -> list[Any]:
    """``numpy._core.multiarray.scalar`` under its NumPy 2 name and its NumPy 1 alias
    ``numpy.core.multiarray.scalar`` (the same function; the unpickler looks globals up by name)."""
    from numpy._core.multiarray import scalar

    return [(scalar, "numpy._core.multiarray.scalar"), (scalar, "numpy.core.multiarray.scalar")]


def _dtype_classes() -> list[Any]:
    """``numpy.dtype`` and ``numpy.dtypes.Float32DType``: the training log's float32 scalars (pseudo Dice,
    losses) are pickled with their dtype."""
    return [np.dtype, np.dtypes.Float32DType]


#: The globals an nnU-Net v2 checkpoint may name, beyond what ``weights_only=True`` allows already
#: (``torch.device``, tensors, plain containers).
NNUNET_SAFE_GLOBALS: list[Any] = [*_numpy_scalar_constructors(), *_dtype_classes()]

_REQUIRED = ("network_weights", "trainer_name")


def load_nnunet_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load ``checkpoint_final.pth`` / ``checkpoint_best.pth`` of an nnU-Net v2 fold, on the CPU.

    Returns:
        The checkpoint dict: ``network_weights`` (state dict), ``trainer_name``, ``init_args``,
        ``inference_allowed_mirroring_axes`` (tuple or ``None``), ...

    Raises:
        DataError: Not a readable file, a global outside the allow-list (a pickle that would run code), or
            not an nnU-Net checkpoint (no ``network_weights``/``trainer_name``); one line naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such nnU-Net checkpoint", path=path)
    try:
        with torch.serialization.safe_globals(NNUNET_SAFE_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError (refused global), RuntimeError, EOFError, zipfile errors...
        raise DataError(f"not a safely readable nnU-Net checkpoint ({_first_line(exc)})", path=path) from None
    if not isinstance(state, dict) or any(key not in state for key in _REQUIRED):
        raise DataError(f"not an nnU-Net v2 checkpoint (needs keys {', '.join(_REQUIRED)})", path=path)
    if not isinstance(state["network_weights"], dict):
        raise DataError("nnU-Net checkpoint network_weights is not a state dict", path=path)
    return state


def _first_line(exc: Exception) -> str:
    """The reason in one short line (torch's refusal names the global; its advice to set
    ``weights_only=False`` is exactly what must not be followed, so it is cut)."""
    text = str(exc).strip()
    for line in text.splitlines():
        if "Unsupported global" in line or "GLOBAL" in line:
            return line.strip().split(". ")[0][:200]
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
