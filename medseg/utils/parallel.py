"""Run a function over many items in worker processes with a tqdm progress bar."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm.auto import tqdm

from medseg.utils.progress import tqdm_disable

__all__ = ["default_workers", "map_with_progress"]

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Number of CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _init_worker() -> None:
    """One torch thread per worker: a forked child that inherits a multi-threaded OpenMP pool from a parent
    that already ran torch ops hangs at its first torch op otherwise (and N workers x N threads
    oversubscribe the cores anyway)."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def map_with_progress(
    fn: Callable[[T], R],
    items: Sequence[T] | Iterable[T],
    *,
    workers: int | None = None,
    desc: str = "",
    disable: bool | None = None,
) -> list[R]:
    """Apply ``fn`` to every item, in order, using ``workers`` processes (1 runs in this process).

    Args:
        fn: A picklable function of one argument (module-level, not a lambda, when ``workers > 1``).
        items: The inputs.
        workers: Worker processes; ``None`` uses every available core, capped at the item count.
        desc: Progress bar label.
        disable: Hide the progress bar (``None`` hides it when stderr is not a terminal).

    Returns:
        ``[fn(item) for item in items]`` in input order. An exception in ``fn`` propagates.
    """
    items = list(items)
    workers = min(default_workers() if workers is None else max(1, workers), max(1, len(items)))
    bar = tqdm(total=len(items), desc=desc, disable=tqdm_disable(None) if disable is None else disable, unit="case")
    try:
        if workers == 1:
            results = []
            for item in items:
                results.append(fn(item))
                bar.update()
            return results
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
            futures = [pool.submit(fn, item) for item in items]
            for future in futures:
                future.result()  # wait in order; update as each finishes
                bar.update()
            return [future.result() for future in futures]
    finally:
        bar.close()
