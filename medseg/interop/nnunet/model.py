"""An nnU-Net v2 trained-model folder, read and built: :func:`load_nnunet_model`.

The folder nnU-Net writes after training (and TotalSegmentator downloads)::

    DatasetXXX_Name/<trainer>__<plans>__<configuration>/
        plans.json  dataset.json  fold_0/checkpoint_final.pth  fold_0/checkpoint_best.pth  fold_1/ ...

Every ``fold_K`` holding the chosen checkpoint is a member of the ensemble (or those of ``folds``). The
configuration is the folder name's last part (as nnU-Net's checkpoints record in ``init_args``). Nothing
pickled is executed: the JSON files are JSON, the checkpoints load with ``weights_only=True``
(:mod:`~medseg.interop.nnunet.checkpoint`), ``postprocessing.pkl`` is never opened.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medseg.errors import DataError
from medseg.interop.nnunet.checkpoint import load_nnunet_checkpoint
from medseg.interop.nnunet.labels import class_names
from medseg.interop.nnunet.network import build_nnunet_network
from medseg.interop.nnunet.plan import NnUNetPlan

__all__ = ["CHECKPOINTS", "NnUNetModel", "is_nnunet_folder", "load_nnunet_model"]

#: ``--checkpoint`` choice -> file name in each ``fold_K``.
CHECKPOINTS = {"final": "checkpoint_final.pth", "best": "checkpoint_best.pth"}

_FOLD = re.compile(r"^fold_(\d+|all)$")


@dataclass(frozen=True)
class NnUNetModel:
    """An nnU-Net model folder's networks and everything inference needs.

    Attributes:
        networks: One network per fold (``eval()`` mode, CPU), each ``(B, 1, *patch)`` -> ``(B, K, *patch)``.
        plan: The configuration's :class:`~medseg.interop.nnunet.plan.NnUNetPlan`.
        labels: Class index (str) -> name (``dataset.json``).
        mirror_axes: The checkpoint's ``inference_allowed_mirroring_axes`` (``()`` when none).
        sources: The checkpoint files, in fold order.
        description: Data set, trainer, plans and configuration (``dataset.json``'s name and the folder's).
    """

    networks: tuple[torch.nn.Module, ...]
    plan: NnUNetPlan
    labels: dict[str, str]
    mirror_axes: tuple[int, ...]
    sources: tuple[str, ...]
    description: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def is_nnunet_folder(path: str | os.PathLike) -> bool:
    """True for a folder with ``plans.json``, ``dataset.json`` and at least one ``fold_K/`` folder."""
    path = Path(path)
    if not (path.is_dir() and (path / "plans.json").is_file() and (path / "dataset.json").is_file()):
        return False
    return any(_FOLD.match(p.name) and p.is_dir() for p in path.iterdir())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"not readable JSON ({exc})", path=path) from None
    if not isinstance(value, dict):
        raise DataError("expected a JSON object", path=path)
    return value


def _fold_files(root: Path, folds: Sequence[int] | None, name: str) -> list[Path]:
    found = {m.group(1): p / name for p in sorted(root.iterdir()) if (m := _FOLD.match(p.name)) and p.is_dir()}
    if folds is not None:
        missing = [k for k in folds if str(k) not in found or not found[str(k)].is_file()]
        if missing:
            raise DataError(f"nnU-Net folder has no fold_{missing[0]}/{name}", path=root)
        return [found[str(k)] for k in folds]
    trained = [found[k] for k in sorted(found, key=lambda k: (k == "all", int(k) if k.isdigit() else 0))
               if found[k].is_file()]
    if not trained:
        raise DataError(f"nnU-Net folder has no fold_K/{name} (--checkpoint best or final?)", path=root)
    return trained


def _configuration_name(root: Path) -> tuple[str, str, str]:
    parts = root.name.split("__")
    if len(parts) != 3:
        raise DataError("an nnU-Net model folder is named <trainer>__<plans>__<configuration>", path=root)
    return parts[0], parts[1], parts[2]


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def load_nnunet_model(path: str | os.PathLike, *, folds: Sequence[int] | None = None,
                      checkpoint: str = "final") -> NnUNetModel:
    """Read an nnU-Net v2 trained-model folder and build its fold networks (no pickled code runs).

    Args:
        path: ``.../DatasetXXX_Name/<trainer>__<plans>__<configuration>``.
        folds: Folds to use (default: every ``fold_K`` holding the checkpoint).
        checkpoint: ``"final"`` (``checkpoint_final.pth``) or ``"best"``.

    Raises:
        DataError: Anything unreadable or unsupported, one line naming the file.
    """
    root = Path(path)
    if checkpoint not in CHECKPOINTS:
        raise DataError(f"checkpoint must be one of {list(CHECKPOINTS)}, got {checkpoint!r}", path=root)
    trainer, plans_name, configuration = _configuration_name(root)
    plans, dataset = _read_json(root / "plans.json"), _read_json(root / "dataset.json")
    labels = class_names(dataset, source=root / "dataset.json")
    channels = dataset.get("channel_names") or dataset.get("modality") or {}
    if len(channels) != 1:
        raise DataError(f"the model takes {len(channels)} input channels; medseg feeds one CT channel",
                        path=root / "dataset.json")
    plan = NnUNetPlan.from_plans(plans, configuration, source=root / "plans.json")
    architecture = plans["configurations"][configuration].get("architecture")
    files = _fold_files(root, folds, CHECKPOINTS[checkpoint])
    networks, mirror_axes = [], None
    for file in files:
        state = load_nnunet_checkpoint(file)
        network = build_nnunet_network(architecture, in_channels=1, num_classes=len(labels), source=root / "plans.json")
        try:
            network.load_state_dict(state["network_weights"])
        except RuntimeError as exc:
            raise DataError(f"weights do not fit plans.json's network ({str(exc).splitlines()[0]})",
                            path=file) from None
        networks.append(network.eval())
        if mirror_axes is None:
            mirror_axes = tuple(int(a) for a in state.get("inference_allowed_mirroring_axes") or ())
    description = {"format": "nnU-Net v2", "dataset": str(dataset.get("name") or root.parent.name),
                   "trainer": trainer, "plans": plans_name, "configuration": configuration,
                   "checkpoint": CHECKPOINTS[checkpoint], "folds": [f.parent.name for f in files],
                   "n_training": _count(dataset.get("numTraining"))}
    return NnUNetModel(networks=tuple(networks), plan=plan, labels=labels, mirror_axes=mirror_axes or (),
                       sources=tuple(str(f) for f in files), description=description)
