"""Fold ensembles: the cross-validation folds' networks applied to each window together, probabilities averaged.

A paper's LiTS test-set prediction is the ensemble of its cross-validation folds (nnU-Net, Isensee et al.
2021, *Nature Methods* 18:203). Here the folds' networks are one module, :class:`FoldEnsemble`, whose
output is the folds' logits stacked on the channel axis, ``(B, F * K, ...)``: the sliding window loads each
window once, every fold's network sees it, and the Gaussian blending (linear, channel by channel) gives each
fold exactly the logits it would get alone. After blending, :func:`mean_probabilities` takes each fold's
softmax and averages them (probabilities, never argmax votes), so the ensemble's probabilities equal the
mean of the single folds' (tested). Test-time mirroring wraps the whole module, so it composes with the
ensemble (each fold's logits averaged over the mirrored inputs, as for one fold).

Memory: the blended buffer holds ``F * K`` float32 maps on the preprocessed grid (only the liver box in
coarse-to-fine mode) instead of ``K``; the weights of the ``F`` networks are held once each.

:func:`fold_agreement` measures how much the folds disagree on a scan (the spread of their tumor volumes in
mL and their mean pairwise Dice), an uncertainty score for sorting a cohort for review.

Own code: MONAI's ``EnsembleEvaluator`` runs whole networks one after the other over a data loader and
nnU-Net averages the folds' logits (not probabilities) one fold at a time.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.errors import DataError
from medseg.runs.folder import CHECKPOINT_NAMES

__all__ = [
    "POSTPROCESSING_FILE",
    "FoldEnsemble",
    "find_fold_runs",
    "fold_agreement",
    "is_fold_folder",
    "log_mean_probabilities",
    "mean_probabilities",
    "read_chosen_postprocessing",
]

#: The post-processing chosen on the cross-validation (``medseg crossval``), beside the fold runs.
POSTPROCESSING_FILE = "postprocessing.json"

_FOLD_NAME = re.compile(r"^fold(\d+)$")

#: Smallest probability before the logarithm of :func:`log_mean_probabilities` (``log`` of it: -80.6).
_TINY = 1e-35


class FoldEnsemble(torch.nn.Module):
    """Several networks with the same input and classes as one: outputs stacked on the channel axis.

    Args:
        networks: The folds' networks, each mapping ``(B, C_in, *patch)`` to ``(B, K, *patch)`` logits
            (a list/tuple output, deep supervision, uses item 0).

    Returns (forward):
        ``(B, F * K, *patch)``: fold ``f``'s logits in channels ``f * K .. (f + 1) * K - 1``.
    """

    def __init__(self, networks: Sequence[torch.nn.Module]) -> None:
        super().__init__()
        if not networks:
            raise ValueError("networks must hold at least one network")
        self.folds = torch.nn.ModuleList(networks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for network in self.folds:
            out = network(x)
            outputs.append((out[0] if isinstance(out, list | tuple) else out).float())
        return torch.cat(outputs, dim=1)


def mean_probabilities(stacked: torch.Tensor, members: int) -> torch.Tensor:
    """Mean over folds of each fold's softmax: ``(F * K, ...)`` stacked logits -> ``(K, ...)`` probabilities.

    Computed one fold at a time (peak memory: the result plus one fold's softmax).
    """
    if stacked.shape[0] % members:
        raise ValueError(f"{stacked.shape[0]} channels are not {members} stacked maps")
    k = stacked.shape[0] // members
    total = torch.softmax(stacked[:k], dim=0)
    for f in range(1, members):
        total += torch.softmax(stacked[f * k : (f + 1) * k], dim=0)
    return total.div_(members)


def log_mean_probabilities(stacked: torch.Tensor, members: int) -> torch.Tensor:
    """``log`` of :func:`mean_probabilities` (``(K, ...)``): scores whose softmax is the mean probability
    and whose argmax is the ensemble's class, so they stand in for one network's logits downstream."""
    return mean_probabilities(stacked, members).clamp_(min=_TINY).log_()


def fold_agreement(stacked: torch.Tensor, members: int, *, spacing_mm: Sequence[float],
                   liver: int = 1, tumor: int = 2) -> dict[str, Any]:
    """How much the folds' label maps (each fold's argmax, before post-processing) agree on one scan.

    Args:
        stacked: ``(F * K, X, Y, Z)`` blended logits of :class:`FoldEnsemble` on the preprocessed grid.
        members: ``F``.
        spacing_mm: Spacing of that grid (mm per voxel along X, Y, Z).
        liver, tumor: Class indices; liver counts liver and tumor voxels (the LiTS liver region).

    Returns:
        ``fold_tumor_volume_ml`` and ``fold_liver_volume_ml`` (one value per fold), ``tumor_volume_sd_ml``
        (their sample standard deviation; 0 for one fold), ``tumor_volume_range_ml`` (max - min), and
        ``fold_dice_tumor``/``fold_dice_liver``: the mean Dice over all pairs of folds (two empty maps agree:
        1; NaN for a single fold, which has no pair).
    """
    k = stacked.shape[0] // members
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    labels = [_argmax(stacked[f * k : (f + 1) * k]) for f in range(members)]
    tumors = [lab == tumor for lab in labels]
    livers = [(lab == liver) | (lab == tumor) for lab in labels]
    tumor_ml = [float(t.sum()) * voxel_ml for t in tumors]
    liver_ml = [float(m.sum()) * voxel_ml for m in livers]
    return {
        "folds": members,
        "fold_tumor_volume_ml": tumor_ml,
        "fold_liver_volume_ml": liver_ml,
        "tumor_volume_sd_ml": float(np.std(tumor_ml, ddof=1)) if members > 1 else 0.0,
        "tumor_volume_range_ml": max(tumor_ml) - min(tumor_ml),
        "fold_dice_tumor": _mean_pairwise_dice(tumors),
        "fold_dice_liver": _mean_pairwise_dice(livers),
    }


def _argmax(logits: torch.Tensor) -> torch.Tensor:
    from medseg.inference.restore import argmax_classes

    return argmax_classes(logits)


def _mean_pairwise_dice(masks: list[torch.Tensor]) -> float:
    """Mean Dice over all pairs (both empty: 1); NaN without a pair."""
    values = []
    for a, b in itertools.combinations(masks, 2):
        total = int(a.sum()) + int(b.sum())
        values.append(1.0 if total == 0 else 2.0 * int((a & b).sum()) / total)
    return float(np.mean(values)) if values else math.nan


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
        return [found[k] for k in sorted(found)]
    missing = [k for k in folds if k not in found]
    if missing:
        raise DataError(f"--folds: fold {missing[0]} has no trained run (fold{missing[0]}/best.pt or last.pt)",
                        path=root)  # fmt: skip
    return [found[k] for k in folds]


def read_chosen_postprocessing(root: str | os.PathLike) -> dict[str, Any] | None:
    """The ``chosen`` post-processing of ``root/postprocessing.json`` (``None`` when there is no file).

    Raises:
        DataError: The file is unreadable or has no ``chosen`` mapping.
    """
    import json

    path = Path(root) / POSTPROCESSING_FILE
    if not path.is_file():
        return None
    try:
        chosen = json.loads(path.read_text(encoding="utf-8")).get("chosen")
    except (OSError, ValueError, AttributeError) as exc:
        raise DataError(f"unreadable post-processing choice ({exc})", path=path) from None
    if not isinstance(chosen, dict):
        raise DataError("expected {'chosen': {post-processing keys}} (as medseg crossval writes)", path=path)
    return chosen
