"""Settings checked against memory before anything large is allocated (issue #29.10).

Two lower bounds, each compared with the memory the work will use, refused in one line (``ConfigError``:
exit status 2) before preprocessing or training allocates anything:

* **Resampling.** Every training case is resampled to ``target_spacing_mm``: the largest case of the
  fingerprint (canonical shape and spacing) becomes ``round(shape * spacing / target)`` voxels, held as a
  float32 image and a uint8 label beside the float32 source (5 bytes per new voxel, 4 per source voxel).
  Compared with the host memory available now (``psutil``; ``/proc/meminfo`` ``MemAvailable`` without it).
  ``target_spacing_mm: [0.05, 0.05, 0.05]`` on a CT asked for more than 1 TB.
* **Training activations.** One step holds at least the input batch, one set of first-stage feature maps
  and the logits at full patch resolution: ``4 bytes x batch x prod(patch) x (in_channels + base_filters
  + num_classes)`` (``base_filters`` 16 when the model leaves it unset). A real U-Net keeps several times
  this (every stage, its normalisations and gradients), so only settings that cannot fit are refused.
  Compared with the training device's memory: the GPU's total for CUDA, the host's available memory for
  the CPU.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from medseg.errors import ConfigError

if TYPE_CHECKING:
    from medseg.training.config import PipelineConfig

__all__ = ["activation_bytes", "available_memory_bytes", "check_memory_budget", "resampled_case_bytes"]

_DEFAULT_BASE_FILTERS = 16  # fewer than any medseg model's default: the bound stays a lower bound


def available_memory_bytes() -> int:
    """Host memory available to a new allocation now (psutil, else ``MemAvailable``, else physical memory)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def resampled_case_bytes(shape: Sequence[int], spacing_mm: Sequence[float], target_mm: Sequence[float]
                         ) -> tuple[tuple[int, ...], int]:
    """``(resampled shape, bytes)`` of one case resampled to ``target_mm``: the float32 source, the float32
    image and the uint8 label (see the module docstring)."""
    out = tuple(max(1, round(n * s / t)) for n, s, t in zip(shape, spacing_mm, target_mm))
    return out, 5 * math.prod(out) + 4 * math.prod(int(n) for n in shape)


def activation_bytes(config: PipelineConfig) -> int:
    """The lower bound on one training step's activations of ``config`` (module docstring), in bytes."""
    t = config.training
    features = config.model.base_filters or _DEFAULT_BASE_FILTERS
    per_voxel = config.in_channels + features + config.data.num_classes
    return 4 * t.batch_size * math.prod(int(n) for n in t.patch_size) * per_voxel


def check_memory_budget(config: PipelineConfig, plan: Any, fingerprint: dict | None = None, *,
                        available: int | None = None, device_memory: int | None = None) -> None:
    """Refuse a target spacing or batch and patch that cannot fit (see the module docstring).

    Args:
        config: The resolved pipeline.
        plan: The preprocessing plan (its ``target_spacing_mm``).
        fingerprint: :func:`medseg.preprocessing.compute_fingerprint`'s result (``shapes``, ``spacings_mm``,
            ``case_ids``); ``None`` (a resumed run's saved plan) skips the resampling bound.
        available: Host memory in bytes (default: :func:`available_memory_bytes`).
        device_memory: The training device's memory (default: the GPU's total for CUDA, else ``available``).

    Raises:
        ConfigError: One line naming the setting, the estimate and the memory.
    """
    available = available_memory_bytes() if available is None else available
    if fingerprint and fingerprint.get("shapes"):
        _check_resampling(plan.target_spacing_mm, fingerprint, available)
    memory, where = (device_memory, "the training device") if device_memory is not None else _device_memory(
        config, available)
    needed = activation_bytes(config)
    if needed > memory:
        t = config.training
        raise ConfigError(f"training.batch_size={t.batch_size} x training.patch_size={list(t.patch_size)} needs at "
                          f"least {_human(needed)} of activations in one step (input, first-stage features and "
                          f"logits, float32), more than the {_human(memory)} of {where}; lower training.batch_size "
                          "or training.patch_size")


def _check_resampling(target: Sequence[float], fingerprint: dict, available: int) -> None:
    sizes = [resampled_case_bytes(shape, spacing, target)
             for shape, spacing in zip(fingerprint["shapes"], fingerprint["spacings_mm"])]  # fmt: skip
    largest = max(range(len(sizes)), key=lambda i: sizes[i][1])
    (out, needed), ids = sizes[largest], fingerprint.get("case_ids") or []
    if needed > available:
        case = ids[largest] if largest < len(ids) else str(largest)
        shape = "x".join(str(n) for n in fingerprint["shapes"][largest])
        spacing = "x".join(f"{s:g}" for s in fingerprint["spacings_mm"][largest])
        raise ConfigError(f"preprocessing.target_spacing_mm={[float(s) for s in target]} resamples case {case} "
                          f"({shape} voxels at {spacing} mm) to {'x'.join(map(str, out))} voxels ({_human(needed)} "
                          f"with its source and label), more than the {_human(available)} of memory available; "
                          "choose a coarser target spacing (null: the data set's median)")


def _device_memory(config: PipelineConfig, available: int) -> tuple[int, str]:
    from medseg.runs.device import resolve_device

    device = resolve_device(config.device)
    if device.type == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(device).total_memory), f"GPU memory on {device}"
    return available, "memory available on the CPU"


def _human(n_bytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n_bytes) < 1024 or unit == "PiB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} PiB"
