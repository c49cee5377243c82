"""Fold ensembles: the cross-validation folds' networks one after another, softmax probabilities averaged.

A paper's LiTS test-set prediction is the ensemble of its cross-validation folds (nnU-Net, Isensee et al.
2021, *Nature Methods* 18:203). Each fold predicts the scan exactly as it would alone (the same windows,
blending and test-time mirroring); :class:`FoldMean` then adds its softmax to a running sum and keeps its
labels for the agreement, so the ensemble's probabilities are the mean of the single folds' (probabilities,
never argmax votes; tested). In coarse-to-fine mode the coarse pass runs once for all folds (their mean
probabilities find the box) and each fold's fine pass starts from that box.

Why one fold at a time, and not every fold on each window as it is loaded: sharing the window would need
every fold's blended logits at once, ``F * K`` float32 maps on the model grid (for the GPU profile's
``512 x 512 x 400`` grid, 6 GB on the GPU for 5 folds), while loading a window is a crop of the
preprocessed image already on the device. One at a time, the ensemble holds one fold's blend, the running
sum of probabilities (``K`` maps) and each fold's liver and tumor masks packed 8 voxels to a byte, and its
network work is the same ``F`` fine passes.

:meth:`FoldMean.agreement` measures how much the folds disagree on a scan (the spread of their tumor
volumes in mL and their mean pairwise Dice), an uncertainty score for sorting a cohort for review.

Own code: MONAI's ``EnsembleEvaluator`` runs whole networks over a data loader and averages after the
fact; nnU-Net averages the folds' logits (not probabilities).
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medseg.errors import DataError
from medseg.geometry import voxel_volume_ml
from medseg.runs.folder import CHECKPOINT_NAMES

if TYPE_CHECKING:
    from medseg.inference.postprocess import PostprocessConfig
    from medseg.io.label_map import LabelMapping

__all__ = [
    "POSTPROCESSING_FILE",
    "FoldEnsemble",
    "FoldMean",
    "find_fold_runs",
    "fold_checkpoint",
    "is_fold_folder",
    "read_chosen_postprocessing",
    "read_postprocessing_file",
]

#: The post-processing chosen on the cross-validation (``medseg crossval``), beside the fold runs.
POSTPROCESSING_FILE = "postprocessing.json"

_FOLD_NAME = re.compile(r"^fold(\d+)$")

#: Set bits of each byte value.
_BITS_IN_BYTE = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)

#: Smallest probability before the logarithm of :func:`log_mean_probabilities` (``log`` of it: -80.6).
_TINY = 1e-35


class FoldEnsemble(torch.nn.Module):
    """The folds' networks of an ensemble, held as one module (``.folds``; ``eval()``, ``to()`` apply to all).

    The predictor runs them one after another (see the module doc); calling the module itself is refused.

    Args:
        networks: The folds' networks, each mapping ``(B, C_in, *patch)`` to ``(B, K, *patch)`` logits.
    """

    def __init__(self, networks: Sequence[torch.nn.Module]) -> None:
        super().__init__()
        if not networks:
            raise ValueError("networks must hold at least one network")
        self.folds = torch.nn.ModuleList(networks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise TypeError("FoldEnsemble holds the folds; predict with each of .folds (Predictor does)")


class FoldMean:
    """The mean softmax probabilities and the agreement of fold predictions added one at a time.

    Args:
        spacing_mm: Spacing of the grid (mm per voxel along X, Y, Z), for the volumes in mL.
        affine: ``(4, 4)`` affine of the grid: a voxel's volume is ``|det|`` of it (exact on a tilted or sheared
            grid); ``None``: the product of ``spacing_mm``.
        liver, tumor: Class indices; liver counts liver and tumor voxels (the LiTS liver region).

    Memory: the sum ``(K, X, Y, Z)`` float32 and two bits per voxel per fold.
    """

    def __init__(self, *, spacing_mm: Sequence[float], liver: int = 1, tumor: int = 2,
                 affine: np.ndarray | None = None) -> None:
        self.voxel_ml = voxel_volume_ml(spacing_mm, affine=affine)
        self.liver, self.tumor = liver, tumor
        self.folds = 0
        self._sum: torch.Tensor | None = None
        self._tumors: list[np.ndarray] = []
        self._livers: list[np.ndarray] = []
        self._tumor_ml: list[float] = []
        self._liver_ml: list[float] = []

    @torch.inference_mode()
    def add(self, logits: torch.Tensor) -> None:
        """Add one fold's blended logits ``(K, X, Y, Z)`` (CPU float32; consumed: turned into its softmax
        in place, and the first fold's becomes the running sum)."""
        from medseg.inference.restore import argmax_classes

        labels = argmax_classes(logits).numpy()
        tumor = labels == self.tumor
        liver = tumor | (labels == self.liver)
        del labels
        self._tumor_ml.append(float(np.count_nonzero(tumor)) * self.voxel_ml)
        self._liver_ml.append(float(np.count_nonzero(liver)) * self.voxel_ml)
        self._tumors.append(np.packbits(tumor, axis=None))
        self._livers.append(np.packbits(liver, axis=None))
        del tumor, liver
        probabilities = _softmax_(logits)  # in place: no second map
        self._sum = probabilities if self._sum is None else self._sum.add_(probabilities)
        self.folds += 1

    @torch.inference_mode()
    def log_mean_probabilities(self) -> torch.Tensor:
        """``log`` of the folds' mean probabilities ``(K, X, Y, Z)``: scores whose softmax is the mean
        probability and whose argmax is the ensemble's class, so they stand in for one network's logits
        downstream. Consumes the sum."""
        if self._sum is None:
            raise ValueError("no fold added")
        total, self._sum = self._sum, None
        return total.div_(self.folds).clamp_(min=_TINY).log_()

    def agreement(self) -> dict[str, Any]:
        """How much the folds' label maps (each fold's argmax, before post-processing) agree.

        Returns:
            ``fold_tumor_volume_ml`` and ``fold_liver_volume_ml`` (one value per fold),
            ``tumor_volume_sd_ml`` (their sample standard deviation; 0 for one fold),
            ``tumor_volume_range_ml`` (max - min), and ``fold_dice_tumor``/``fold_dice_liver``: the mean
            Dice over all pairs of folds (two empty maps agree: 1; NaN for a single fold, which has no pair).
        """
        tumor_ml = self._tumor_ml
        return {
            "folds": self.folds,
            "fold_tumor_volume_ml": list(tumor_ml),
            "fold_liver_volume_ml": list(self._liver_ml),
            "tumor_volume_sd_ml": float(np.std(tumor_ml, ddof=1)) if self.folds > 1 else 0.0,
            "tumor_volume_range_ml": max(tumor_ml) - min(tumor_ml) if tumor_ml else 0.0,
            "fold_dice_tumor": _mean_pairwise_dice(self._tumors),
            "fold_dice_liver": _mean_pairwise_dice(self._livers),
        }


def _softmax_(logits: torch.Tensor) -> torch.Tensor:
    """:func:`torch.softmax` over axis 0, in place (the same values; torch has no in-place softmax)."""
    logits.sub_(logits.amax(dim=0, keepdim=True)).exp_()
    return logits.div_(logits.sum(dim=0, keepdim=True))


def _mean_pairwise_dice(packed: list[np.ndarray]) -> float:
    """Mean Dice over all pairs of bit-packed masks (both empty: 1); NaN without a pair."""
    values = []
    for a, b in itertools.combinations(packed, 2):
        total = _count_bits(a) + _count_bits(b)
        values.append(1.0 if total == 0 else 2.0 * _count_bits(a & b) / total)
    return float(np.mean(values)) if values else math.nan


def _count_bits(packed: np.ndarray) -> int:
    """Set bits of a ``np.packbits`` array (a byte table: ``np.bitwise_count`` needs NumPy 2)."""
    return int(_BITS_IN_BYTE[packed].sum(dtype=np.int64))


def is_fold_folder(path: str | os.PathLike) -> bool:
    """True for a folder without a checkpoint of its own holding ``fold<K>/`` run folders."""
    path = Path(path)
    if not path.is_dir() or any((path / name).is_file() for name in CHECKPOINT_NAMES):
        return False
    return any(_FOLD_NAME.match(p.name) and p.is_dir() for p in path.iterdir())


def find_fold_runs(root: str | os.PathLike, folds: Sequence[int] | None = None) -> list[Path]:
    """The run folders ``root/fold<K>/`` holding a checkpoint, in fold order (``folds``: only these).

    Raises:
        DataError: A requested fold has no run folder or no checkpoint, or ``root`` holds no trained fold.
    """
    root = Path(root)
    found = {}
    for p in root.iterdir() if root.is_dir() else ():
        m = _FOLD_NAME.match(p.name)
        if m and p.is_dir() and any((p / name).is_file() for name in CHECKPOINT_NAMES):
            found[int(m.group(1))] = p
    if folds is None:
        if not found:
            raise DataError("no trained fold here (fold<K>/ with best.pt or last.pt)", path=root)
        folds = sorted(found)
    missing = [k for k in folds if k not in found]
    if missing:
        raise DataError(f"--folds: fold {missing[0]} has no trained run (fold{missing[0]}/best.pt or last.pt)",
                        path=root)  # fmt: skip
    return [found[k] for k in folds]


def fold_checkpoint(run: str | os.PathLike) -> Path:
    """The checkpoint a fold run contributes to cross-validation and to the fold ensemble: its final
    ``last.pt`` (as nnU-Net evaluates and ensembles its folds' final checkpoints), else ``best.pt``.

    ``best.pt`` was selected on the fold's own validation cases: its Dice on them would be optimistic, and
    the ensemble would not be the model that ``medseg crossval`` measured and chose the post-processing on.
    """
    last = Path(run) / "last.pt"
    return last if last.is_file() else Path(run) / "best.pt"


def read_chosen_postprocessing(root: str | os.PathLike) -> dict[str, Any] | None:
    """The ``chosen`` post-processing of ``root/postprocessing.json`` (``None`` when there is no file).

    Raises:
        DataError: The file is unreadable or has no ``chosen`` mapping.
    """
    path = Path(root) / POSTPROCESSING_FILE
    return _read_choice(path)["chosen"] if path.is_file() else None


def read_postprocessing_file(path: str | os.PathLike, labels: LabelMapping | None = None) -> PostprocessConfig:
    """The ``chosen`` post-processing of a ``postprocessing.json`` that ``medseg crossval`` wrote (``medseg
    predict --postprocessing FILE``: the choice made on an nnU-Net folder's validation outputs), for a
    prediction that reads ``labels`` as liver and tumor (``--labels``; ``None``: LiTS').

    The choice (largest liver, lesion sizes) was made on the structures the file's ``labels`` name (``medseg
    crossval`` of an nnU-Net folder records its ``--labels``; a file without them was chosen on LiTS' classes);
    applied to other classes it would act on other structures, so it is refused.

    Raises:
        DataError: No such file, unreadable, no ``chosen`` mapping, unknown/invalid steps, or chosen for other
            classes than ``labels``; one line.
    """
    from medseg.errors import ConfigError
    from medseg.inference.postprocess import PostprocessConfig
    from medseg.io.label_map import LITS_MAPPING

    path = Path(path)
    if not path.is_file():
        raise DataError("--postprocessing: no such file (a postprocessing.json that medseg crossval wrote)", path=path)
    document = _read_choice(path)
    lits = {"liver": LITS_MAPPING.liver, "tumor": LITS_MAPPING.tumor}
    labels = labels or LITS_MAPPING
    recorded = document.get("labels")
    theirs, ours = _classes(lits if recorded is None else recorded), _classes({"liver": labels.liver,
                                                                                "tumor": labels.tumor})
    if theirs != ours:
        raise DataError(f"--postprocessing: chosen for classes {theirs} but this prediction reads {ours} (pass the "
                        "--labels the choice was made with)", path=path)
    try:
        return PostprocessConfig.from_dict(document["chosen"])
    except (ConfigError, TypeError) as exc:
        raise DataError(f"--postprocessing: {exc}", path=path) from None


def _classes(recorded: Any) -> str:
    """``liver=5 tumor=6`` from a ``{"liver": [...], "tumor": [...]}`` mapping (values sorted as text)."""
    if not isinstance(recorded, dict):
        return repr(recorded)
    parts = ((k, sorted(map(str, recorded.get(k) or ()))) for k in ("liver", "tumor"))
    return " ".join(f"{k}={','.join(v)}" for k, v in parts if v) or "none"


def _read_choice(path: Path) -> dict[str, Any]:
    """The whole ``postprocessing.json``, read once; its ``chosen`` checked to be a mapping."""
    import json

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        chosen = document.get("chosen")
    except (OSError, ValueError, AttributeError) as exc:
        raise DataError(f"unreadable post-processing choice ({exc})", path=path) from None
    if not isinstance(chosen, dict):
        raise DataError("expected {'chosen': {post-processing keys}} (as medseg crossval writes)", path=path)
    return document
