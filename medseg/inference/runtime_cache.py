"""The cache of converted networks (OpenVINO IR): made once per network, window and OpenVINO version.

Converting a PyTorch network to OpenVINO (``openvino.convert_model``, which traces it) takes seconds for
the CPU-profile network and about a minute for the pipeline's 31.2 M-parameter one; compiling the saved
model takes a tenth of a second. So the converted model is kept, in one folder per :class:`IrKey`:

``<cache_dir>/<key digest>/`` holding ``model.xml`` and ``model.bin`` (the IR, float32 weights) and
``key.json`` (the key and the SHA-256 of both files).

- **Key**: the network's content (:func:`network_sha256`: its class, structure and every weight, so a
  retrained or edited checkpoint gets a new entry whatever its file name), the input per window
  ``(C, *patch)``, the batch dimension (``"dynamic"``: one IR serves every batch size, the last, smaller
  batch of a scan included) and the OpenVINO version, plus :data:`CACHE_FORMAT`.
- **Never trusted when stale**: an entry is used only if its ``key.json`` equals the key and both files
  still have the recorded SHA-256; anything else (another key under the digest, a missing, truncated or
  edited file, an unreadable model) is moved aside and the network converted again.
- **Atomic, two processes**: an entry is written into a temporary folder beside it and renamed into place
  (:func:`medseg.utils.atomic.atomic_dir`), so a reader sees a whole entry or none. Two processes
  converting the same network both convert; the first rename wins and the other uses the winner's entry
  (the same key, hence the same model).
- **Where**: ``$XDG_CACHE_HOME/medseg/openvino`` (``~/.cache/medseg/openvino``) by default (a folder of
  the user's, never a run folder); ``InferenceSettings.cache_dir`` / ``medseg predict --cache-dir`` choose
  another. A cache that cannot be written (read-only, full) is logged and the converted model used from
  memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from medseg.utils.atomic import atomic_dir
from medseg.utils.cache_home import medseg_cache_dir

__all__ = ["CACHE_FORMAT", "IrKey", "cached_model", "default_cache_dir", "network_sha256"]

logger = logging.getLogger(__name__)

#: Version of the entry layout and of how medseg converts (bumped when either changes).
CACHE_FORMAT = 1

_KEY_FILE = "key.json"
_FILES = ("model.xml", "model.bin")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/medseg/openvino`` or ``~/.cache/medseg/openvino``: the user's own cache folder."""
    return medseg_cache_dir() / "openvino"


def network_sha256(network: torch.nn.Module) -> str:
    """Hex SHA-256 of a network's content: its class, its module structure (``repr``) and every parameter
    and buffer (name, dtype, shape, bytes), independent of the file it was loaded from."""
    digest = hashlib.sha256()
    digest.update(f"{type(network).__module__}.{type(network).__qualname__}\n{network!r}\n".encode())
    for name, tensor in sorted(network.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class IrKey:
    """What a converted network depends on.

    Attributes:
        network_sha256: :func:`network_sha256` of the PyTorch network.
        input_shape: One window's input ``(C, *patch)``.
        batch: The batch dimension of the IR (``"dynamic"``).
        openvino: The OpenVINO version that converted it.
        format: :data:`CACHE_FORMAT`.
    """

    network_sha256: str
    input_shape: tuple[int, ...]
    batch: str
    openvino: str
    format: int = CACHE_FORMAT

    def as_dict(self) -> dict[str, Any]:
        """The key as JSON values (``input_shape`` a list)."""
        return {**asdict(self), "input_shape": list(self.input_shape)}

    def digest(self) -> str:
        """The entry's folder name: SHA-256 of the key's JSON, 32 hex digits."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:32]


def cached_model(cache_dir: str | os.PathLike, key: IrKey, convert: Callable[[], Any]) -> tuple[Any, bool]:
    """The IR for ``key``: read from ``cache_dir`` if a valid entry is there, else ``convert()``-ed and stored.

    Args:
        cache_dir: The cache folder (created when missing).
        key: :class:`IrKey` of the network.
        convert: Makes the ``openvino.Model`` (called only on a miss).

    Returns:
        The ``openvino.Model`` and whether it was converted (``False``: a cache hit).
    """
    entry = Path(cache_dir) / key.digest()
    model = _read_entry(entry, key)
    if model is not None:
        return model, False
    model = convert()
    try:
        _write_entry(entry, key, model)
    except OSError as exc:
        logger.warning("could not cache the converted network in %s (%s); using it from memory", entry, exc)
    return model, True


def _read_entry(entry: Path, key: IrKey) -> Any | None:
    """The entry's model if it is complete, of ``key`` and unchanged since written; else ``None`` (a stale
    entry is moved aside and removed)."""
    import openvino

    if not entry.is_dir():
        return None
    try:
        recorded = json.loads((entry / _KEY_FILE).read_text())
        if recorded.get("key") != key.as_dict():
            raise ValueError("written for another key")
        for name in _FILES:
            if _file_sha256(entry / name) != recorded["sha256"][name]:
                raise ValueError(f"{name} changed since it was written")
        return openvino.Core().read_model(str(entry / "model.xml"), str(entry / "model.bin"))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        logger.warning("converted-network cache entry %s is stale (%s): converting again", entry, exc)
        _discard(entry)
        return None


def _write_entry(entry: Path, key: IrKey, model: Any) -> None:
    """Save ``model`` with its key into ``entry`` atomically; if another process wrote it first, keep theirs."""
    import openvino

    try:
        with atomic_dir(entry) as tmp:
            openvino.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
            sha = {name: _file_sha256(tmp / name) for name in _FILES}
            (tmp / _KEY_FILE).write_text(json.dumps({"key": key.as_dict(), "sha256": sha}, indent=2) + "\n")
    except OSError:
        if _read_entry(entry, key) is None:  # not another process's complete entry: a real failure
            raise
        logger.info("another process cached this network first: %s", entry)


def _discard(entry: Path) -> None:
    """Move ``entry`` aside (one atomic rename, so no reader sees it half removed), then remove it."""
    trash = entry.with_name(f".{entry.name}.stale-{os.getpid()}-{secrets.token_hex(3)}")
    with contextlib.suppress(OSError):
        os.replace(entry, trash)
        shutil.rmtree(trash, ignore_errors=True)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
