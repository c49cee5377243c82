"""Atomic, durable file writes that respect the umask, and clean-up of the temporary files a kill leaves.

Every file medseg writes (label maps, CSV, JSON, PNG, checkpoints, caches, phantom data, DICOM series)
goes through :func:`atomic_path` (or :func:`atomic_dir` for a folder):

1. a temporary file is created beside the target with ``os.open(..., O_CREAT | O_EXCL, 0o666)``, so the
   kernel applies the user's umask (``tempfile.mkstemp`` would make it ``0600``: unreadable to the group);
2. the caller's writer fills it; the file is then flushed to disk (``os.fsync``);
3. it is renamed over the target (``os.replace``: atomic on POSIX and Windows on one file system) and the
   folder is fsync'ed, so the new name survives a power loss. Folders created on the way are fsync'ed too.

A reader therefore sees the old file or the complete new one, never a truncated one. An ``OSError`` on
the way (full disk, read-only file system, permission denied) removes the temporary file and is re-raised
naming the *target* (not the hidden temporary name), so the CLI can print one line; the previous target
is untouched. A writer that reports a full disk in its own words (``torch.save``: ``RuntimeError:
[enforce fail at inline_container.cc]``) is turned into ``OSError(ENOSPC)`` too, when the file system
has no space left.

Temporary names are ``.<head>.<host>-<boot>-<pidns>-<pid>-<token>.medseg-tmp<suffixes>``, e.g.
``.last.3f2a91c0-5d1e0b7c9a42-4026531836-48211-9c1e2b07.medseg-tmp.pt``; the target's suffixes are kept so
that format-sniffing writers (nibabel, matplotlib, torch, numpy) behave as they would for the target.
Because the name carries the kernel's boot id, the PID namespace and the process, :func:`remove_stale_temps`
can prove a temporary file is stale: written in this boot and PID namespace by a process that no longer runs
(any other owner, e.g. a container with host networking sharing the hostname: older than a day). The
first write into a folder by a process removes such leftovers there, so a killed run's temporary files
(checkpoint-sized ones included) disappear at the next run in the same folder. Files left by earlier
medseg versions (``.<head>.<8 random>.tmp<suffixes>``, from ``mkstemp``) are removed when older than an
hour. Nothing else is ever deleted.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CSV_FLOAT_FORMAT",
    "atomic_dir",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_csv",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "is_temp_name",
    "json_ready",
    "makedirs_durable",
    "remove_stale_temps",
]

logger = logging.getLogger(__name__)

_TEMP_MARK = ".medseg-tmp"
_TEMP_NAME = re.compile(r"^\..*\.(?P<owner>[0-9a-f]{8}-(?:[0-9a-f]{12}|x)-(?:\d+|x))-(?P<pid>\d+)-[0-9a-f]{6,}"
                        + re.escape(_TEMP_MARK) + r"[^/]*$")
_HOST_ONLY_TEMP_NAME = re.compile(r"^\..*\.[0-9a-f]{8}-\d+-[0-9a-f]{6,}" + re.escape(_TEMP_MARK) + r"[^/]*$")  # 0.x
_LEGACY_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)*$")  # tempfile.mkstemp/mkdtemp
OTHER_HOST_MAX_AGE_S = 24 * 3600.0
LEGACY_MAX_AGE_S = 3600.0
_FULL_BYTES = 64 * 1024  # less free space than this when a writer fails: the disk is full
_cleaned: set[tuple[int, str]] = set()  # (pid, folder) already cleaned by this process


def _owner_tag() -> str:
    """``<host>-<boot>-<pid namespace>``: who can interpret the PID beside it in a temporary name.

    ``host`` is a hash of the hostname (8 hex digits, for people reading the folder), ``boot`` the first 12 hex
    digits of the kernel's boot id and ``pid namespace`` the inode of ``/proc/self/ns/pid``: two processes
    read each other's PIDs only when both are equal. ``x`` where Linux gives none; on systems without PID
    namespaces (macOS, Windows) the hostname alone (boot ``0...0``, namespace ``0``).
    """
    host = hashlib.sha1(socket.gethostname().encode("utf-8", "surrogateescape")).hexdigest()[:8]
    if not sys.platform.startswith("linux"):
        return f"{host}-{'0' * 12}-0"
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip().replace("-", "")[:12].lower()
        boot = boot if re.fullmatch(r"[0-9a-f]{12}", boot) else "x"
    except OSError:
        boot = "x"
    try:
        namespace = re.fullmatch(r"pid:\[(\d+)\]", os.readlink("/proc/self/ns/pid"))
    except OSError:
        namespace = None
    return f"{host}-{boot}-{namespace[1] if namespace else 'x'}"


def _suffixes(path: Path) -> str:
    """All suffixes of ``path`` (``.nii.gz`` stays ``.nii.gz``) so writers pick the right format."""
    return "".join(path.suffixes)


def _temp_name(target: Path) -> str:
    head = target.name.split(".")[0][:64] or "file"
    return f".{head}.{_owner_tag()}-{os.getpid()}-{secrets.token_hex(4)}{_TEMP_MARK}{_suffixes(target)}"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a medseg temporary file or folder name (this version's or an earlier one's)."""
    return bool(_TEMP_NAME.match(name) or _HOST_ONLY_TEMP_NAME.match(name) or _LEGACY_TEMP_NAME.match(name))


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (new, renamed or removed names) to disk; a no-op where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # Windows cannot open folders; some file systems refuse
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(folder: str | os.PathLike) -> Path:
    """``mkdir -p`` with the umask's mode, fsync'ing the parent of every folder it creates."""
    folder = Path(folder)
    missing = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for new in reversed(missing):
        with contextlib.suppress(FileExistsError):
            new.mkdir()
        fsync_dir(new.parent)
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    return folder


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or unknown: keep its files
    return True


def _is_stale(entry: os.DirEntry, now: float) -> bool:
    match = _TEMP_NAME.match(entry.name)
    try:
        age = now - entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return False
    if match and match["owner"] == _owner_tag() and "x" not in match["owner"].split("-")[1:]:
        return not _pid_alive(int(match["pid"]))  # same boot, same PID namespace: the PID is this kernel's
    if match or _HOST_ONLY_TEMP_NAME.match(entry.name):  # another owner: its PID cannot be checked from here
        return age > OTHER_HOST_MAX_AGE_S
    return bool(_LEGACY_TEMP_NAME.match(entry.name)) and age > LEGACY_MAX_AGE_S


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the stale medseg temporary files and folders directly in ``folder``; returns what was removed.

    A temporary file is stale when its name says it was written in this boot of this kernel and in this PID
    namespace by a process that is no longer running, or by any other owner (another host, boot or PID
    namespace: a container sharing the folder and the hostname; or a name of the previous version, which
    carried the hostname only) more than :data:`OTHER_HOST_MAX_AGE_S` ago; earlier versions' ``mkstemp``
    names count when older than :data:`LEGACY_MAX_AGE_S`. Errors are logged, never raised.
    """
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        logger.debug("cannot list %s for stale temporary files: %s", folder, exc)
        return removed
    for entry in entries:
        if not entry.name.startswith(".") or not is_temp_name(entry.name) or not _is_stale(entry, now):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            logger.warning("cannot remove stale temporary file %s: %s", entry.path, exc)
            continue
        removed.append(Path(entry.path))
    if removed:
        logger.info("removed %d stale temporary file(s) in %s", len(removed), folder)
        with contextlib.suppress(OSError):
            fsync_dir(folder)
    return removed


def _prepare_folder(folder: Path) -> None:
    makedirs_durable(folder)
    key = (os.getpid(), os.path.abspath(folder))
    if key not in _cleaned:
        _cleaned.add(key)
        remove_stale_temps(folder)


def _naming_target(exc: OSError, target: Path, tmp: Path) -> OSError:
    """The same error, naming ``target`` where it named the temporary file (or nothing)."""
    if exc.filename not in (None, str(tmp), os.fspath(tmp)) or exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(target))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success make it durable and rename it to ``path``.

    On any error the temporary file is removed and ``path`` keeps its previous content; an ``OSError``
    is re-raised naming ``path``. The temporary file exists (empty, with the umask's mode) when the
    body starts; writers that replace rather than overwrite it are fine too.

    Example:
        >>> with atomic_path("out/seg.nii.gz") as tmp:  # doctest: +SKIP
        ...     nib.save(img, tmp)
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, expected a file name", str(target))
    _prepare_folder(target.parent)
    tmp = target.parent / _temp_name(target)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException as exc:
        new = _error_for(exc, target, tmp)
        if new is exc:
            raise
        raise new from exc


def _error_for(exc: BaseException, target: Path, tmp: Path) -> BaseException:
    """Remove ``tmp``; the error to raise for ``exc``: OS errors name ``target``, a full disk is ENOSPC."""
    full = isinstance(exc, Exception) and not isinstance(exc, OSError) and _disk_full(target.parent)
    _remove(tmp)  # after the check: the temporary file still took its space then
    if isinstance(exc, OSError):
        return _naming_target(exc, target, tmp)
    if full:  # torch.save says "RuntimeError: [enforce fail at inline_container.cc...]" on a full disk
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
    return exc


def _disk_full(folder: Path) -> bool:
    """Whether the file system of ``folder`` has (almost) no space left for an unprivileged writer."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # Windows has no statvfs
        return False
    return st.f_bavail * st.f_frsize < _FULL_BYTES


def _remove(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp)
        else:
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success fsync its files and rename it to ``path``.

    ``path`` must not exist or be an empty folder (a folder cannot be replaced atomically). Same error
    handling as :func:`atomic_path`.
    """
    target = Path(path)
    _prepare_folder(target.parent)
    tmp = target.parent / _temp_name(target)
    tmp.mkdir(mode=0o777)
    try:
        yield tmp
        for sub, _, files in os.walk(tmp):
            for name in files:
                _fsync_file(Path(sub) / name)
            fsync_dir(sub)
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException as exc:
        new = _error_for(exc, target, tmp)
        if new is exc:
            raise
        raise new from exc


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8; undecodable file-name bytes kept as they were) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8", "surrogateescape"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON to ``path`` atomically: NaN and inf become ``null`` (:func:`json_ready`),
    so every JSON medseg writes parses in JavaScript, ``jq`` and other strict readers."""
    return atomic_write_text(path, json.dumps(json_ready(obj), indent=indent, allow_nan=False) + "\n")


def json_ready(value: Any) -> Any:
    """``value`` as plain JSON data: NaN/inf -> ``None`` (a number that cannot be computed is "not scored",
    never 0 or 1), numpy scalars and arrays -> numbers and lists, paths -> strings, tuples -> lists, mapping
    keys -> strings.

    Raises:
        TypeError: A value JSON cannot hold (names its type).
    """
    if isinstance(value, Mapping):
        return {_json_key(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_ready(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return json_ready(value.tolist())
    raise TypeError(f"object of type {type(value).__name__} is not JSON serialisable")


def _json_key(key: Any) -> str:
    if hasattr(key, "item"):
        key = key.item()
    return key if isinstance(key, str) else json.dumps(key) if isinstance(key, bool) or key is None else str(key)


#: Significant digits of floats in every CSV medseg writes: far beyond any metric's precision, without the
#: 17-digit binary noise of ``repr`` (0.9530000000000001).
CSV_FLOAT_FORMAT = "%.10g"


def atomic_write_csv(path: str | os.PathLike, frame: Any) -> Path:
    """Write a pandas ``DataFrame`` as CSV (no index, floats to :data:`CSV_FLOAT_FORMAT`, NaN as an empty
    cell) atomically; undecodable file-name bytes kept as they were."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, encoding="utf-8", errors="surrogateescape", float_format=CSV_FLOAT_FORMAT)
    return Path(path)


