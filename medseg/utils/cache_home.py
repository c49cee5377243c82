"""Where medseg keeps what it can make again: ``$XDG_CACHE_HOME/medseg``, else ``~/.cache/medseg``.

The XDG base-directory rule (``XDG_CACHE_HOME``, an absolute path; a relative or empty value is ignored, as
the specification says) lets a cluster put the phantom sets, preprocessed arrays and converted OpenVINO
networks on scratch storage instead of a quota'd home folder, and keeps a test session out of the user's
own cache. The standard library and the packages medseg depends on have no helper for it (``platformdirs``
would be one more dependency for four lines).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["medseg_cache_dir"]


def medseg_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/medseg`` when ``XDG_CACHE_HOME`` is an absolute path, else ``~/.cache/medseg``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "medseg"
