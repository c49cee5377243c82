"""release_freed_memory hands freed heap pages back: RSS falls by what was freed (glibc only)."""

from __future__ import annotations

import platform

import pytest

from medseg.utils.memory import _malloc_trim, release_freed_memory


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(platform.system() != "Linux" or _malloc_trim() is None or platform.libc_ver()[0] != "glibc",
                    reason="glibc's malloc_trim")  # fmt: skip
def test_freed_heap_blocks_leave_the_process():
    chunks = [bytearray(64 * 1024) for _ in range(3200)]  # 200 MB of heap blocks (below the mmap threshold)
    keep = bytearray(64 * 1024)  # above them: the freed blocks are not at the heap's top, free() keeps them
    before = _rss_mb()
    del chunks
    held = _rss_mb()
    assert release_freed_memory() is True
    after = _rss_mb()
    assert held - after > 150 and before - after > 150, (before, held, after)
    assert len(keep) == 64 * 1024
