"""Hand memory that large tensors freed back to the operating system.

glibc's allocator keeps freed blocks of a few MB in the process heap (its mmap threshold rises after
each large free, up to 32 MB), so after a fold's blend is freed the process still holds it, and a fold
ensemble's peak memory grows with each fold although only one fold's maps are alive at a time.
``malloc_trim(0)`` returns those free pages (measured on a LiTS-size scan with 5 folds: peak RSS
+34 MB over one fold without it, +21 MB with it, 6 MB of which are the four more networks; see
docs/benchmarks.md). Elsewhere (macOS, Windows, musl) it does nothing.

Own code: neither torch nor NumPy exposes the allocator's trim.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache

__all__ = ["release_freed_memory"]


@lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim`` or ``None`` where there is none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> bool:
    """Return the heap's free pages to the system (glibc ``malloc_trim(0)``); ``True`` if any were."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
