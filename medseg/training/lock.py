"""One ``medseg train`` per run folder, on the same folder lock as ``predict`` and ``evaluate``.

:func:`run_lock` holds :func:`medseg.utils.lock.folder_lock` of the run folder for the purpose
``"train"`` (the hidden file :data:`LOCK_NAME`, which names its holder's PID, host and command). A second
process on the same folder is refused at once with a :class:`~medseg.errors.ConfigError` naming that PID.
The kernel drops the lock when its process dies, even by SIGKILL, so a lock file left by a dead process is
simply taken over: there are no stale locks to clean by hand. The lock is advisory and local (``flock``
does not reach across NFS clients).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from medseg.errors import ConfigError
from medseg.utils.lock import FolderLockedError, folder_lock, holder_text, lock_path

__all__ = ["LOCK_NAME", "run_lock"]

LOCK_NAME = lock_path(".", "train").name


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, *, enabled: bool = True) -> Iterator[Path | None]:
    """Hold the run folder's lock for the ``with`` block (the folder is created if needed).

    Args:
        run_dir: The run folder.
        enabled: ``False``: do nothing (the non-main ranks of a distributed run, which write nothing).

    Raises:
        ConfigError: Another live process holds the lock; the message names its PID.
    """
    if not enabled:
        yield None
        return
    with contextlib.ExitStack() as stack:
        try:
            path = stack.enter_context(folder_lock(run_dir, "train"))
        except FolderLockedError:
            holder = holder_text(lock_path(run_dir, "train"))
            raise ConfigError(f"in use by another `medseg train` ({holder}); wait for it to finish or stop it, "
                              "then use --resume", path=run_dir) from None
        yield path
