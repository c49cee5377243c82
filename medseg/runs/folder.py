"""Where a run folder keeps its checkpoints: ``best.pt`` (best validation metric) and ``last.pt``."""

from __future__ import annotations

import os
from pathlib import Path

from medseg.errors import DataError

__all__ = ["CHECKPOINT_NAMES", "find_checkpoint", "find_run_folder"]

#: Checkpoint file names in a run folder, in the order a run is loaded from them.
CHECKPOINT_NAMES = ("best.pt", "last.pt")


def find_checkpoint(run: str | os.PathLike) -> Path:
    """The checkpoint of a run: the file itself, or ``best.pt`` (else ``last.pt``) in a run folder.

    Raises:
        DataError: ``run`` does not exist, or is a folder without either checkpoint.
    """
    path = Path(run)
    if path.is_dir():
        for name in CHECKPOINT_NAMES:
            if (path / name).is_file():
                return path / name
        raise DataError(f"run folder has no {' or '.join(CHECKPOINT_NAMES)}", path=path)
    if not path.exists():
        raise DataError("no such run folder or checkpoint", path=path)
    return path


def find_run_folder(root: str | os.PathLike) -> Path:
    """The first run folder (in sorted path order) at or below ``root`` holding a checkpoint.

    ``best.pt`` folders are preferred over ``last.pt``-only ones, as in :func:`find_checkpoint`.

    Raises:
        DataError: No checkpoint exists below ``root``.
    """
    root = Path(root)
    for name in CHECKPOINT_NAMES:
        found = sorted(root.rglob(name))
        if found:
            return found[0].parent
    raise DataError("no checkpoint was written below this folder", path=root)
