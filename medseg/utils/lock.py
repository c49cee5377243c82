"""Advisory locks on output folders, released by the kernel when their process ends (even by SIGKILL).

A lock is a hidden file in the folder (``.medseg-<purpose>.lock``) locked with ``flock`` (POSIX;
``msvcrt.locking`` on Windows). The
file holds the holder's PID, host and command, so a refused second process can say who holds it. The
holder removes the file before unlocking it; a process that then obtains the lock on the removed file
sees that the path no longer names it and locks the new file instead, so no two processes ever hold
one lock. A file left by a killed holder is simply locked again by the next process.

The lock file is opened with ``O_NOFOLLOW`` and must be a regular file: a symbolic link (or a FIFO, a
device) planted under the lock's name in a shared folder is refused with :class:`UnsafeLockFileError`,
so medseg never truncates or writes the file a link points to, and never removes the link.

Uses: ``medseg evaluate`` holds ``.medseg-evaluate.lock`` for its whole run (a second ``evaluate`` into
the same folder is refused); ``medseg predict`` holds ``.medseg-predict.lock`` only while it writes one
case's files, so several ``predict`` processes (or ``torchrun`` ranks) share a folder safely and each
case's label map and volumes JSON come from the same process.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from medseg.errors import MedsegError
from medseg.utils.atomic import makedirs_durable

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["FolderLockedError", "UnsafeLockFileError", "folder_lock", "holder_text", "lock_path", "open_lock_file"]

_held: set[tuple[int, str]] = set()  # (pid, lock file) held by this process


class FolderLockedError(MedsegError):
    """Another process holds the folder's lock."""


class UnsafeLockFileError(MedsegError):
    """The lock file's name is taken by a symbolic link or something else than a regular file."""


def open_lock_file(path: Path) -> int:
    """``os.open`` of the lock file ``path`` for reading and writing, created if missing, never through a link.

    Raises:
        UnsafeLockFileError: ``path`` is a symbolic link, a FIFO, a device or a folder (nothing is written).
    """
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise UnsafeLockFileError(f"{path.name} is a symbolic link or not a regular file: medseg does not write "
                                      "through it; remove it and run again", path=path.parent) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeLockFileError(f"{path.name} is not a regular file: remove it and run again", path=path.parent)
    return fd


def lock_path(folder: str | os.PathLike, purpose: str) -> Path:
    """The lock file of ``folder`` for ``purpose`` (``"evaluate"``, ``"predict"``...)."""
    return Path(folder) / f".medseg-{purpose}.lock"


def holder_text(path: Path) -> str:
    """Who holds the lock file ``path``: ``"PID 12 on host (medseg train)"``, or ``"another process"``."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        try:
            text = os.read(fd, 4096).decode("utf-8") if stat.S_ISREG(os.fstat(fd).st_mode) else ""
        finally:
            os.close(fd)
        info = json.loads(text or "{}")
    except (OSError, ValueError):
        return "another process"
    if not isinstance(info, dict) or "pid" not in info:
        return "another process"
    return f"PID {info['pid']} on {info.get('host', '?')} ({info.get('command', '?')})"


def _stamp(fd: int) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv[:2]) or "python",
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode())
    except OSError:  # a full disk: the lock holds all the same, only its holder cannot be named
        pass


def _lock(fd: int, *, wait: bool) -> bool:
    """Lock ``fd``; ``False`` when another process holds it and ``wait`` is false."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True
    import msvcrt  # pragma: no cover - Windows: a lock on the first byte, also released at exit

    while True:  # pragma: no cover
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            if not wait:
                return False
            time.sleep(0.2)


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:  # pragma: no cover - Windows
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, purpose: str, *, wait: bool = False) -> Iterator[Path]:
    """Hold ``folder``'s ``purpose`` lock for the ``with`` block (the folder is created); re-entrant.

    Args:
        folder: The output folder.
        purpose: Lock name; different purposes do not exclude each other.
        wait: Block until the lock is free (``True``) or raise at once (``False``).

    Raises:
        FolderLockedError: ``wait=False`` and another process holds the lock (the message names it).
    """
    path = lock_path(makedirs_durable(folder), purpose)
    key = (os.getpid(), os.path.abspath(path))
    if key in _held:  # re-entrant: the CLI and the library function it calls may both lock
        yield path
        return
    fd = _acquire(path, folder, wait=wait)
    _held.add(key)
    try:
        _stamp(fd)
        yield path
    finally:
        _held.discard(key)
        with contextlib.suppress(OSError):
            path.unlink()  # still locked: a process waiting on this inode sees it is gone and retries
        _unlock(fd)
        os.close(fd)


def _acquire(path: Path, folder: str | os.PathLike, *, wait: bool) -> int:
    """Open and lock ``path``; retry when the file was removed by its previous holder meanwhile."""
    while True:
        fd = open_lock_file(path)
        try:
            if not _lock(fd, wait=wait):
                raise FolderLockedError(f"folder is in use by {holder_text(path)}: wait for it to finish or "
                                        f"choose another folder ({path.name})", path=folder)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
            if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the file we locked was unlinked by the previous holder: lock the new one
