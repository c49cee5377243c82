"""Output-path rules shared by every command: never write over an input; OS errors as one line.

Every ``medseg`` command knows its inputs (scans, label maps, data set folders, a pipeline file, a run
folder) and the outputs it is about to write. :func:`check_outputs` refuses, before any work starts:

* an output path that *is* an input (the same path, a symbolic link to it or a hard link: same inode),
  e.g. ``medseg volumes seg.nii.gz --json seg.nii.gz``;
* an output file that already exists inside an input folder, or is one of an input data set's files
  (``medseg check D --csv D/volume-2.nii.gz``);
* two outputs of one command on the same path (``--json x --csv x``);
* an output file name that is an existing folder, and an output folder that is an existing file.

The rules compare resolved paths and ``(st_dev, st_ino)``, so ``./a/../seg.nii.gz`` and links are caught.
:func:`os_error_line` turns any ``OSError`` (full disk, read-only file system, permission denied) into
the one line the CLI prints.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from medseg.errors import ConfigError

__all__ = ["check_outputs", "displayable", "os_error_line", "same_file"]

PathLike = str | os.PathLike


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file or folder (same resolved path, or same inode when both exist)."""
    a, b = Path(a), Path(b)
    if _resolved(a) == _resolved(b):
        return True
    ia, ib = _identity(a), _identity(b)
    return ia is not None and ia == ib


def _resolved(path: Path) -> Path:
    try:
        return path.resolve(strict=False)
    except (OSError, RuntimeError):  # symlink loops
        return Path(os.path.abspath(path))


def _inside(path: Path, folder: Path) -> bool:
    try:
        _resolved(path).relative_to(_resolved(folder))
    except ValueError:
        return False
    return True


def check_outputs(
    outputs: Mapping[str, PathLike | None],
    inputs: Iterable[PathLike | None],
    *,
    folders: Iterable[str] = (),
    input_files: Iterable[PathLike] = (),
) -> None:
    """Refuse outputs that would write over an input, clash with each other, or have the wrong kind.

    Args:
        outputs: What the command writes, by the flag or name to report (``{"--json": path}``); ``None``
            values (an output not requested) are ignored.
        inputs: The command's input files and folders (``None`` ignored). An input folder protects
            every existing file inside it.
        folders: Keys of ``outputs`` that are folders (``--out`` of ``predict``); the others are files.
        input_files: Further files read (e.g. a data set's discovered images and labels).

    Raises:
        ConfigError: One line naming the flag, the path and the input it would overwrite.
    """
    wanted = {key: Path(p) for key, p in outputs.items() if p is not None}
    protected = [Path(p) for p in inputs if p is not None] + [Path(p) for p in input_files]
    folder_keys = set(folders)
    seen: dict[Path, str] = {}
    for key, path in wanted.items():
        _check_kind(key, path, is_folder=key in folder_keys)
        resolved = _resolved(path)
        if resolved in seen:
            raise ConfigError(f"{key} and {seen[resolved]} name the same file", path=path)
        seen[resolved] = key
        for source in protected:
            _check_one(key, path, source, is_folder=key in folder_keys)


def _check_kind(key: str, path: Path, *, is_folder: bool) -> None:
    if is_folder and path.exists() and not path.is_dir():
        raise ConfigError(f"{key} names an existing file; expected a folder", path=path)
    if not is_folder and path.is_dir():
        raise ConfigError(f"{key} names a folder; expected a file name", path=path)


def _check_one(key: str, path: Path, source: Path, *, is_folder: bool) -> None:
    if same_file(path, source):
        raise ConfigError(f"{key} is an input of this command; refusing to write over it", path=path)
    if is_folder:
        return
    if path.exists() and source.is_dir() and _inside(path, source):
        raise ConfigError(f"{key} would overwrite a file inside the input folder {source}", path=path)


def os_error_line(exc: OSError) -> str:
    """One line for an ``OSError``: the file(s), the cause and its symbol, e.g. ``out/a.csv: No space
    left on device (ENOSPC)``."""
    cause = exc.strerror or (str(exc.args[0]) if exc.args else type(exc).__name__)
    if exc.errno in errno.errorcode:
        cause = f"{cause} ({errno.errorcode[exc.errno]})"
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(names)}: {cause}" if names else cause


def displayable(text: str) -> str:
    """``text`` with the undecodable bytes of a non-UTF-8 file name shown as U+FFFD (for figures: fonts
    and matplotlib refuse the surrogates Python keeps those bytes in)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
