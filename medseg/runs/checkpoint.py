"""Checkpoints: atomic save, safe load (``weights_only=True``), and random-number-generator states.

Training writes checkpoints here and inference reads them here (through :class:`~medseg.runs.RunRecord`),
so neither stage imports the other.

A checkpoint is a dict of plain Python types and tensors only, so it loads with
``torch.load(path, weights_only=True)`` (no pickled code runs when opening a file from elsewhere)::

    {"format_version": 1, "model": state_dict, "model_config": {...}, "plan": {...}, "config": {...},
     "inference": {"patch_size": [...], "context_slices": int, "spatial_dims": int, "num_classes": int,
                   "labels": {"0": "background", ...}, "postprocessing": {...}},
     "epoch": int, "optimizer": ..., "scheduler": ..., "scaler": ..., "rng": ..., "best_metric": float}

:func:`save_checkpoint` writes to a temporary file and renames it, so a run killed while saving keeps
the previous ``last.pt`` intact.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.errors import DataError
from medseg.utils.atomic import atomic_path

__all__ = ["FORMAT_VERSION", "capture_rng_state", "load_checkpoint", "restore_rng_state", "save_checkpoint"]

FORMAT_VERSION = 1
_REQUIRED_KEYS = ("format_version", "model", "model_config")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + rename); returns the path.

    ``format_version`` is added when missing. ``state`` must hold plain types and tensors only.
    """
    state = {"format_version": FORMAT_VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a medseg checkpoint with ``weights_only=True``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataError: The file is truncated/corrupt, not a torch file, holds non-plain objects, or is not a
            medseg checkpoint (missing ``format_version``/``model``/``model_config``) or is from a newer
            format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, zipfile errors...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"not a readable checkpoint ({first[:200]})", path=path) from exc
    if not isinstance(state, dict) or any(k not in state for k in _REQUIRED_KEYS):
        raise DataError(
            f"not a medseg checkpoint (needs keys {', '.join(_REQUIRED_KEYS)})", path=path
        )
    version = state["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DataError(f"checkpoint field 'format_version' must be a positive integer, got {version!r}", path=path)
    if version > FORMAT_VERSION:
        raise DataError(
            f"checkpoint format {state['format_version']} is newer than this medseg ({FORMAT_VERSION}); upgrade",
            path=path,
        )
    return state


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA) generator states as plain types and tensors."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()  # noqa: NPY002  (the legacy global generator is what we save)
    state = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, np_keys.tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore the generator states saved by :func:`capture_rng_state`."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
