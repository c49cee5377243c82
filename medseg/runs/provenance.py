"""What a model was trained on: the record every checkpoint, run folder and prediction output carries.

A model trained only on medseg's synthetic phantom includes stomach and vertebrae in the liver on real CT;
nothing in its outputs said so. :class:`TrainingData` is written into every training checkpoint (and the
run's ``data.json``), read back by :class:`~medseg.runs.RunRecord`, built from ``dataset.json`` for an
nnU-Net model folder, and stamped by ``medseg predict`` on ``run.json``, ``<case>_volumes.json``, the
preview caption and the DICOM SEG's algorithm identification. A phantom-only model gets one warning per
run (:data:`PHANTOM_WARNING`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["PHANTOM_WARNING", "UNKNOWN", "TrainingData", "describe_models", "is_phantom_dataset", "phantom_only"]

#: The one warning of a run whose every model saw only the synthetic phantom.
PHANTOM_WARNING = "the model was trained on synthetic phantom data only: not for measuring real scans"

_PHANTOM_GENERATOR = "medseg.data.phantom"  # manifest.json "generator" of medseg.data.write_phantom_dataset


@dataclass(frozen=True)
class TrainingData:
    """The data a model was trained on.

    Attributes:
        name: The data set's name (its folder name, or ``dataset.json``'s ``name`` for an nnU-Net model).
        root: Absolute path of the data set folder (``None`` when unknown).
        n_cases: Cases the model was trained on (``None`` when unknown).
        phantom: Whether the data set is medseg's synthetic phantom (``manifest.json`` written by
            :func:`medseg.data.write_phantom_dataset`).
        framework: ``"medseg"`` or ``"nnunet"`` (the trainer that produced the weights).
        trainer: nnU-Net's trainer and plans (``nnUNetTrainer__nnUNetPlans__3d_fullres``), else ``None``.
    """

    name: str
    root: str | None = None
    n_cases: int | None = None
    phantom: bool = False
    framework: str = "medseg"
    trainer: str | None = None

    @classmethod
    def from_dataset(cls, root: str | os.PathLike, *, n_cases: int | None) -> TrainingData:
        """The record of a medseg training on the data set folder ``root``."""
        path = Path(root).resolve()
        return cls(name=path.name, root=str(path), n_cases=n_cases, phantom=is_phantom_dataset(path))

    @classmethod
    def from_dict(cls, data: Any) -> TrainingData:
        """Read a stored record; anything else (an older checkpoint without one) is :data:`UNKNOWN`."""
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            return UNKNOWN
        n_cases = data.get("n_cases")
        return cls(name=data["name"], root=data.get("root") if isinstance(data.get("root"), str) else None,
                   n_cases=n_cases if isinstance(n_cases, int) and not isinstance(n_cases, bool) else None,
                   phantom=data.get("phantom") is True, framework=str(data.get("framework", "medseg")),
                   trainer=data.get("trainer") if isinstance(data.get("trainer"), str) else None)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as stored in checkpoints and written in ``run.json`` and ``<case>_volumes.json``."""
        return asdict(self)

    def describe(self) -> str:
        """One line: ``"LiTS (131 cases)"``, ``"phantom-small-seed0-n16 (12 cases, synthetic phantom)"``."""
        details = [f"{self.n_cases} cases"] if self.n_cases is not None else []
        if self.phantom:
            details.append("synthetic phantom")
        if self.framework != "medseg":
            details.append(self.framework + (f" {self.trainer}" if self.trainer else ""))
        return self.name + (f" ({', '.join(details)})" if details else "")


#: The record of a checkpoint that does not say what it was trained on (written before this record existed).
UNKNOWN = TrainingData(name="unknown")


def is_phantom_dataset(root: str | os.PathLike) -> bool:
    """Whether ``root`` is a data set written by medseg's phantom generator (its ``manifest.json``)."""
    try:
        manifest = json.loads((Path(root) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("generator") == _PHANTOM_GENERATOR


def phantom_only(records: Sequence[TrainingData]) -> bool:
    """Whether every model (fold) saw only the synthetic phantom."""
    return bool(records) and all(r.phantom for r in records)


def describe_models(records: Sequence[TrainingData]) -> str:
    """One line for captions and the DICOM SEG: the distinct training data of the models (folds)."""
    seen: list[str] = []
    for record in records:
        if record.describe() not in seen:
            seen.append(record.describe())
    return "; ".join(seen) if seen else UNKNOWN.name
