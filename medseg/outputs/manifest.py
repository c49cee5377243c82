"""The run manifest ``run.json``: what made an output folder, so a result can be traced to its model.

``medseg predict`` and ``medseg evaluate`` write one into every output folder. It is rewritten atomically
(temporary file + rename, :mod:`medseg.utils.atomic`) when the run starts, after every case and at the end,
so a reader always finds valid JSON, even after the process was killed.

Keys: ``manifest_version``, ``command`` (``"predict"``/``"evaluate"``), ``status`` (``"running"`` while
the run is going or after it was killed hard, ``"complete"``, ``"interrupted"`` (Ctrl-C / SIGTERM) or
``"failed"``), ``argv`` (the command line), ``medseg_version``, ``python``, ``versions`` (torch, MONAI,
numpy, highdicom, ...), ``host``, ``pid``, ``device``, ``checkpoints`` (``[{path, sha256}]``),
``pipeline`` and ``settings`` (the resolved settings), ``started``, ``updated`` and ``finished`` (UTC,
ISO 8601), and ``cases``: one entry per case with at least ``case_id``, ``input``, ``status``; predict adds
``seconds`` (per step in ``timings_s``), ``warnings``, ``outputs`` and, for DICOM input, ``study_uid`` /
``series_uid``. A ``status`` of ``"running"`` whose ``pid`` is gone on ``host`` means the run was killed.

A ``shared`` manifest (``medseg predict``, whose processes may share a folder) keeps the cases other
processes recorded: every write re-reads the file while holding the folder's predict lock and keeps the
entries of cases this process has not recorded, so ``cases`` lists every case predicted into the folder;
the other keys describe the process that wrote last.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from medseg.utils.atomic import atomic_write_json

__all__ = ["MANIFEST_NAME", "ManifestInfo", "RunManifest", "file_sha256", "library_versions"]

#: File name of the manifest in an output folder.
MANIFEST_NAME = "run.json"
_LIBRARIES = ("torch", "monai", "numpy", "scipy", "SimpleITK", "nibabel", "pydicom", "highdicom", "scikit-image")


def file_sha256(path: str | os.PathLike, *, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries a result depends on (``None`` when not installed)."""
    out: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ManifestInfo:
    """What :meth:`RunManifest.start` records about a run.

    Attributes:
        command: ``"predict"`` or ``"evaluate"``.
        settings: Resolved settings of the run (JSON-serialisable).
        checkpoints: Model checkpoint files; each is hashed (SHA-256).
        pipeline: The run's pipeline/plan description, when there is one.
        device: Where the model runs.
        argv: The command line (``sys.argv`` when ``None``).
    """

    command: str
    settings: Mapping[str, Any] | None = None
    checkpoints: Sequence[str | os.PathLike] = ()
    pipeline: Mapping[str, Any] | None = None
    device: str | None = None
    argv: Sequence[str] | None = None


@dataclass
class RunManifest:
    """``run.json`` of one output folder, rewritten atomically on every change.

    Example:
        >>> manifest = RunManifest.start("out", command="predict", settings={"tta": False})  # doctest: +SKIP
        >>> manifest.add_case({"case_id": "3", "input": "scan.nii.gz", "status": "ok"})  # doctest: +SKIP
        >>> manifest.finish("complete")  # doctest: +SKIP
    """

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    shared: bool = False

    @classmethod
    def start(
        cls,
        out_dir: str | os.PathLike,
        info: ManifestInfo | None = None,
        *,
        name: str = MANIFEST_NAME,
        shared: bool = False,
        **fields: Any,
    ) -> RunManifest:
        """Write a ``"running"`` manifest into ``out_dir`` (created) and return it.

        Args:
            out_dir: The output folder.
            info: What the manifest records (:class:`ManifestInfo`); its fields may also be given as keywords
                (``command="predict"``), which replace those of ``info``.
            name: File name (``run.json``; one per process under ``torchrun``, e.g. ``run.rank1.json``).
            shared: Keep the cases other processes record in the same file (module docstring).

        Raises:
            TypeError: No ``command``, or a keyword that is not a field of :class:`ManifestInfo`.
        """
        from medseg import __version__

        info = replace(info, **fields) if info is not None else ManifestInfo(**fields)
        now = _now()
        data = {
            "manifest_version": 1, "command": info.command, "status": "running",
            "argv": list(sys.argv if info.argv is None else info.argv), "medseg_version": __version__,
            "python": platform.python_version(), "versions": library_versions(), "host": socket.gethostname(),
            "pid": os.getpid(), "device": info.device,
            "checkpoints": [{"path": str(Path(p).resolve()), "sha256": file_sha256(p)} for p in info.checkpoints],
            "pipeline": dict(info.pipeline or {}), "settings": dict(info.settings or {}),
            "started": now, "updated": now, "finished": None, "cases": [],
        }
        manifest = cls(Path(out_dir) / name, data, shared)
        manifest.write()
        return manifest

    def write(self) -> Path:
        """Rewrite the file atomically (``updated`` set to now)."""
        self.data["updated"] = _now()
        if not self.shared:
            return atomic_write_json(self.path, self.data)
        from medseg.utils.lock import folder_lock

        with folder_lock(self.path.parent, "predict", wait=True):
            mine = {c.get("case_id") for c in self.data["cases"]}
            others = [c for c in _recorded_cases(self.path) if c.get("case_id") not in mine]
            return atomic_write_json(self.path, {**self.data, "cases": [*others, *self.data["cases"]]})

    def add_case(self, entry: Mapping[str, Any]) -> None:
        """Record a finished case (replacing an earlier entry of the same ``case_id``) and rewrite."""
        cases = [c for c in self.data["cases"] if c.get("case_id") != entry.get("case_id")]
        cases.append(dict(entry))
        self.data["cases"] = cases
        self.write()

    def update(self, **fields: Any) -> None:
        """Set top-level fields (e.g. a summary) and rewrite."""
        self.data.update(fields)
        self.write()

    def finish(self, status: str = "complete", **fields: Any) -> None:
        """Mark the run ``status`` (``complete``, ``interrupted``, ``failed``), stamp ``finished``, rewrite."""
        if status not in ("complete", "interrupted", "failed"):
            raise ValueError(f"status must be complete, interrupted or failed, got {status!r}")
        self.data.update(fields, status=status, finished=_now())
        self.write()




def _recorded_cases(path: Path) -> list[dict]:
    """The ``cases`` of the manifest at ``path`` as it is on disk (none when missing or unreadable)."""
    import json

    try:
        cases = json.loads(path.read_text(encoding="utf-8")).get("cases")
    except (OSError, ValueError, AttributeError):
        return []
    return [c for c in cases if isinstance(c, dict)] if isinstance(cases, list) else []
