"""Multi-GPU and multi-node training with torch DistributedDataParallel, launched by ``torchrun``.

``torchrun`` starts one process per GPU and tells each its place through its launch protocol
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); :func:`setup_distributed`
reads that protocol, nothing else. NCCL on CUDA, gloo on CPU. See ``docs/training.md`` for commands.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistributedInfo", "all_mean", "barrier", "cleanup_distributed", "setup_distributed"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedInfo:
    """This process's place: ``rank`` of ``world_size`` processes, GPU ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> tuple[DistributedInfo, torch.device]:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE > 1``); pick this rank's device.

    Returns ``(info, device)``; a single process returns rank 0 of 1 and ``torch.device(device)``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedInfo(), torch.device(device)
    info = DistributedInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.startswith("cuda"):
        torch.cuda.set_device(info.local_rank)
        dev = torch.device("cuda", info.local_rank)
        backend = "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    logger.info("distributed: rank %d of %d (%s, %s)", info.rank, info.world_size, backend, dev)
    return info, dev


def barrier(info: DistributedInfo) -> None:
    """Wait for every process (no-op for one process)."""
    if info.enabled:
        dist.barrier()


def all_mean(value: float, info: DistributedInfo, device: torch.device) -> float:
    """Mean of ``value`` over processes."""
    if not info.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / info.world_size


def cleanup_distributed(info: DistributedInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
