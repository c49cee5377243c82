"""One ``medseg train`` per run folder: an advisory lock file that names its holder.

:func:`run_lock` takes an exclusive ``fcntl.flock`` on ``<run folder>/train.lock`` and writes the holder's
PID and host into it. A second process on the same folder is refused at once with a
:class:`~medseg.errors.ConfigError` naming that PID. The kernel drops a flock when its process dies, even
by SIGKILL, so a lock file left by a dead process is simply taken over: there are no stale locks to
clean by hand. The lock is advisory and local (``flock`` does not reach across NFS clients); on systems
without ``fcntl`` (Windows) the file is written but not locked.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from medseg.errors import ConfigError

__all__ = ["LOCK_NAME", "run_lock"]

LOCK_NAME = "train.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return "another process"
    return f"PID {text[0]}" + (f" on {text[1]}" if len(text) > 1 else "") if text else "another process"


def _try_lock(path: Path) -> int:
    """An open descriptor of ``path`` holding the exclusive lock; retried when the holder unlinked the file
    between our open and our lock (then the lock would guard a name nobody else sees)."""
    for _ in range(5):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if fcntl is None:  # pragma: no cover
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"in use by another `medseg train` ({_holder(path)}); wait for it to finish or stop "
                              f"it, then use --resume", path=path.parent) from None  # fmt: skip
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    raise ConfigError("could not lock the run folder (its lock file keeps changing)", path=path.parent)


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
    from medseg.utils.atomic import makedirs_durable

    run_dir = Path(run_dir)
    makedirs_durable(run_dir)
    path = run_dir / LOCK_NAME
    fd = _try_lock(path)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
