"""CPU inference settings: reduced precision where the CPU computes it natively, and thread counts.

A network trained on a GPU (the pipeline's 31.2 M-parameter 3D U-Net with 128^3 windows) is often run on a
CPU workstation. There, bfloat16 autocast (``torch.autocast("cpu", dtype=torch.bfloat16)``: convolutions
in bfloat16 through oneDNN, accumulation and normalisation in float32) roughly halves the time of a
window on CPUs with native bfloat16 arithmetic (Intel AMX ``amx_bf16``, AVX512-BF16 ``avx512_bf16``,
e.g. Sapphire Rapids / Zen 4); without it oneDNN emulates bfloat16 and is slower than float32, so
``"auto"`` chooses it only when the CPU reports one of those flags and oneDNN supports bfloat16. The
accuracy cost is measured in ``docs/benchmarks.md`` (Dice within 0.002 of float32 on the phantom).

Threads: PyTorch's default is one thread per logical CPU; on SMT machines one per physical core is
faster for convolutions. :func:`physical_cores` counts the cores this process may run on.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch

__all__ = ["PRECISIONS", "cpu_bf16_flags", "cpu_threads", "physical_cores", "resolve_precision"]

#: Values of ``InferenceSettings.precision`` / ``medseg predict --precision``.
PRECISIONS = ("auto", "float32", "bfloat16")

_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@lru_cache(maxsize=1)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The native-bfloat16 flags of this CPU (``/proc/cpuinfo``: ``amx_bf16``, ``avx512_bf16``); ``()`` if none
    or unknown (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return tuple(f for f in _BF16_FLAGS if f in flags)
    return ()


def _onednn_bf16() -> bool:
    """Whether oneDNN (mkldnn) is built in and supports bfloat16 on this CPU."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # private API: absent in some builds
        return False


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """The compute precision a run uses: ``"float32"`` or ``"bfloat16"`` (CPU autocast).

    Args:
        precision: ``"auto"`` (bfloat16 on a CPU with native bfloat16 and oneDNN support, else float32),
            ``"float32"`` or ``"bfloat16"`` (forced; emulated, hence slow, without native support).
        device: Where the network runs; on CUDA the result is ``"float32"`` (CUDA's float16 autocast is
            ``InferenceSettings.amp``).

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if torch.device(device).type != "cpu":
        return "float32"
    if precision == "auto":
        return "bfloat16" if cpu_bf16_flags() and _onednn_bf16() else "float32"
    return precision


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (SMT siblings counted once; >= 1)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))  # fmt: skip
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def cpu_threads(world_size: int = 1) -> int:
    """Threads for CPU inference: one per physical core (SMT siblings slow convolutions down), shared by
    the ``world_size`` processes of one machine, and never more than ``OMP_NUM_THREADS`` when the user set
    it (a Slurm job or a shared workstation limits a process that way)."""
    threads = max(1, physical_cores() // max(1, world_size))
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if limit.isdigit() and int(limit) > 0:
        threads = min(threads, int(limit))
    return threads
