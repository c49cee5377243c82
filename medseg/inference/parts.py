"""A cohort split into parts, one per job: ``--part K/N``, Slurm job arrays and ``torchrun`` processes.

In this field a cohort of thousands of CTs runs as a Slurm job array (nnU-Net's ``-num_parts`` /
``-part_id``; one scan per task at the largest scale) or as ``torchrun`` processes. Every part takes the
same deterministic share of the **sorted case ids** (case ``i`` of the sorted list goes to part
``i mod N``), so each scan is predicted by exactly one part, whatever order the parts run in or which
machine they land on, and a part re-run with ``--skip-existing`` predicts only what it has not finished.

Where the split comes from, composed when several apply (a Slurm array whose tasks each run ``torchrun``):

* ``--part K/N`` (0-based, as nnU-Net's ``-part_id``), else a Slurm array task: index
  ``(SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP`` of ``SLURM_ARRAY_TASK_COUNT``
  (``--array=1-10`` and ``--array=0-9`` both give parts 0..9);
* times ``torchrun``'s ``RANK`` of ``WORLD_SIZE`` within it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medseg.errors import ConfigError

__all__ = ["Part", "parse_part", "resolve_part"]


@dataclass(frozen=True)
class Part:
    """This process's part of the cohort.

    Attributes:
        index: 0-based part number, ``0 <= index < count``.
        count: Number of parts.
        source: Where the split came from: ``"single"``, ``"--part"``, ``"slurm"``, ``"torchrun"``, or a
            composition such as ``"slurm+torchrun"``.
    """

    index: int = 0
    count: int = 1
    source: str = "single"

    def __post_init__(self) -> None:
        if not (isinstance(self.count, int) and self.count >= 1 and isinstance(self.index, int)
                and 0 <= self.index < self.count):  # fmt: skip
            raise ConfigError(f"a part needs 0 <= K < N, got {self.index}/{self.count}")

    @property
    def label(self) -> str:
        """``"K/N"``."""
        return f"{self.index}/{self.count}"

    def select(self, items: Sequence[Any], key: Callable[[Any], str]) -> list[Any]:
        """This part's items: item ``i`` of ``items`` sorted by ``key`` when ``i mod count == index``."""
        ordered = sorted(items, key=key)
        return [item for i, item in enumerate(ordered) if i % self.count == self.index]

    def within(self, inner: Part) -> Part:
        """``inner`` (e.g. a ``torchrun`` rank) subdividing this part: part ``index * inner.count + inner.index``
        of ``count * inner.count``."""
        if inner.count == 1:
            return self
        if self.count == 1:
            return inner
        return Part(self.index * inner.count + inner.index, self.count * inner.count, f"{self.source}+{inner.source}")

    def to_dict(self) -> dict[str, Any]:
        """As recorded in ``run.json``."""
        return {"index": self.index, "count": self.count, "source": self.source}


def parse_part(text: str) -> Part:
    """``"K/N"`` (0-based K) as a :class:`Part`.

    Raises:
        ConfigError: Not two integers ``K/N`` with ``0 <= K < N``.
    """
    index, sep, count = str(text).strip().partition("/")
    if not (sep and index.strip().isdigit() and count.strip().isdigit() and int(index) < int(count)):
        raise ConfigError(f"--part must be K/N with 0 <= K < N (e.g. 0/4), got {text!r}")
    return Part(int(index), int(count), "--part")


def _slurm_part(env: Mapping[str, str]) -> Part | None:
    if "SLURM_ARRAY_TASK_ID" not in env:
        return None
    try:
        task, count = int(env["SLURM_ARRAY_TASK_ID"]), int(env["SLURM_ARRAY_TASK_COUNT"])
        first, step = int(env.get("SLURM_ARRAY_TASK_MIN", 0)), int(env.get("SLURM_ARRAY_TASK_STEP", 1) or 1)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"a Slurm array task without a usable SLURM_ARRAY_TASK_COUNT/MIN/STEP ({exc})") from None
    offset, rest = divmod(task - first, step)
    if rest or not 0 <= offset < count:
        raise ConfigError(f"SLURM_ARRAY_TASK_ID={task} is not one of the {count} tasks from {first} in steps of "
                          f"{step}; give --part K/N")  # fmt: skip
    return Part(offset, count, "slurm")


def resolve_part(part: str | None, environ: Mapping[str, str] | None = None) -> Part:
    """This process's part: ``--part`` (else the Slurm array task) within the ``torchrun`` rank.

    Raises:
        ConfigError: A malformed ``--part``, Slurm or ``torchrun`` variables that do not describe a part.
    """
    env = os.environ if environ is None else environ
    outer = parse_part(part) if part is not None else (_slurm_part(env) or Part())
    try:
        rank, world = int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))
    except ValueError as exc:
        raise ConfigError(f"invalid RANK/WORLD_SIZE environment ({exc})") from None
    return outer.within(Part(rank, world, "torchrun") if world > 1 else Part())
