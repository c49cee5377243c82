"""Post-processing chosen on the cross-validation predictions, as nnU-Net's ``determine_postprocessing``.

nnU-Net (Isensee et al. 2021, *Nature Methods* 18:203) decides its post-processing empirically: a step is
applied at test time only if, on the out-of-fold predictions of the cross-validation, it improves the
Dice of the region it acts on and makes no other region worse. Here the steps of
:mod:`medseg.inference.postprocess` are decided in their order of application, each on top of the steps
already kept:

0. the dense CRF (:mod:`medseg.inference.crf`; acts on both regions: kept when it raises the liver's or the
   tumor's Dice and lowers neither), when the out-of-fold predictions were also refined by it (``medseg
   crossval`` runs the CRF on each case's probabilities as it predicts, and keeps both label maps);
1. keep the largest liver (acts on the liver region, labels {1, 2});
2. tumor only inside the liver (``tumor_inside_liver_dilation_mm``; acts on the tumor region, {2});
3. a minimum lesion volume from :data:`LESION_VOLUME_GRID_MM3` (acts on tumor): the value with the highest
   tumor Dice among those that raise it.

A step is kept when the mean per-case Dice of its region rises by more than :data:`MIN_GAIN` and the
other region's falls by no more than :data:`MIN_GAIN` (floating-point ties are not a gain). A case whose
reference and prediction are both empty in a region scores Dice 1 there (they agree), so removing a false
positive tumor from a tumor-free case counts as the gain it is; nnU-Net's NaN for such cases would make
the step invisible on them.

Every case is read once: all combinations of the candidate steps are scored on it (at most
``2 * 2 * (1 + len(grid))`` post-processings of one label map, and as many of its CRF-refined map), and the
decisions are taken on the table of mean Dice per combination. The choice is written to
``<runs>/postprocessing.json``, which :meth:`medseg.inference.Predictor.from_run` of the folder of fold runs uses.

Own code: the decision rule is nnU-Net's; the steps and the table are ours.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from medseg.inference.crf import CrfSettings
from medseg.inference.ensemble import POSTPROCESSING_FILE
from medseg.inference.postprocess import PostprocessConfig, postprocess_labels
from medseg.labels import liver_mask, tumor_mask

__all__ = ["CRF_PREDICTIONS", "LESION_VOLUME_GRID_MM3", "MIN_GAIN", "POSTPROCESSING_FILE", "TUMOR_DILATION_MM",
           "SearchSettings", "candidates", "choose_postprocessing", "choose_postprocessing_on", "decide",
           "score_combinations"]  # fmt: skip

logger = logging.getLogger(__name__)

#: Minimum lesion volumes tried by step 3 (mm^3; 0 = off). 65 mm^3 is a sphere of 5 mm diameter.
LESION_VOLUME_GRID_MM3 = (10.0, 65.0, 250.0, 1000.0)

#: Dilation of the liver for step 2 (mm), as the pipelines' default.
TUMOR_DILATION_MM = 5.0

#: The CRF-refined out-of-fold predictions beside ``predictions/`` in ``<runs>/crossval/``.
CRF_PREDICTIONS = "predictions_crf"

#: A change of mean Dice smaller than this is no change.
MIN_GAIN = 1e-6

_NONE = PostprocessConfig(keep_largest_liver=False, tumor_inside_liver_dilation_mm=None, min_lesion_volume_mm3=0.0)


def candidates(grid_mm3: Sequence[float] = LESION_VOLUME_GRID_MM3, dilation_mm: float = TUMOR_DILATION_MM
               ) -> list[PostprocessConfig]:
    """Every combination of the three steps (the first is no post-processing)."""
    return [PostprocessConfig(keep_largest_liver=largest, tumor_inside_liver_dilation_mm=inside,
                              min_lesion_volume_mm3=volume)
            for largest, inside, volume in itertools.product((False, True), (None, dilation_mm), (0.0, *grid_mm3))]


def _dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two boolean masks; both empty: 1 (see the module doc)."""
    total = int(pred.sum()) + int(ref.sum())
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(pred & ref)) / total


def score_combinations(cases: Iterable[tuple[np.ndarray, np.ndarray, Sequence[float]] | tuple[np.ndarray, ...]],
                       configs: Sequence[PostprocessConfig], *, ignore_label: int | None = None) -> np.ndarray:
    """Per-case Dice of every config: ``(n_cases, n_configs, 2)`` (liver, tumor).

    Args:
        cases: ``(prediction, reference, spacing_mm[, affine])``: raw (not post-processed) label maps on one
            grid; the grid's affine, when given, sizes lesions by the true voxel volume (a tilted scan).
        configs: The post-processings to score.
        ignore_label: The references' value of unannotated voxels (partial annotations): each config runs
            on the dense prediction and is scored on the annotated voxels only.
    """
    rows = []
    for pred, ref, spacing, *affine in cases:
        annotated = None if ignore_label is None else np.asarray(ref) != ignore_label
        ref_liver, ref_tumor = liver_mask(ref), tumor_mask(ref)
        row = []
        for config in configs:
            out = postprocess_labels(pred, spacing_mm=spacing, config=config, affine=affine[0] if affine else None)
            if annotated is not None:
                out = np.where(annotated, out, 0)
            row.append((_dice(liver_mask(out), ref_liver), _dice(tumor_mask(out), ref_tumor)))
        rows.append(row)
    return np.asarray(rows, dtype=float).reshape(len(rows), len(configs), 2)


def decide(scores: np.ndarray, configs: Sequence[PostprocessConfig], *, crf_scores: np.ndarray | None = None,
           crf: CrfSettings | None = None) -> dict[str, Any]:
    """The greedy decision of the module doc on the table of :func:`score_combinations`.

    Args:
        scores: ``(n_cases, n_configs, 2)`` of the raw predictions.
        configs: The configs of ``scores``' columns.
        crf_scores: The same table of the CRF-refined predictions (``None``: the CRF is no candidate).
        crf: The CRF's settings that refined them (recorded in the choice when kept).

    Returns:
        ``{"chosen": config dict, "steps": [{"step", "kept", "tried", "liver_dice", "tumor_dice", ...}],
        "dice": {"none": (liver, tumor), "chosen": (liver, tumor)}}`` with mean Dice over the cases.
    """
    mean = {config: scores[:, i].mean(axis=0) for i, config in enumerate(configs)}
    if crf_scores is not None:
        crf = crf or CrfSettings()
        mean.update({replace(config, crf=crf): crf_scores[:, i].mean(axis=0) for i, config in enumerate(configs)})
    current, steps = _NONE, []

    def consider(name: str, region: int | None, options: list[PostprocessConfig]) -> None:
        nonlocal current
        base = mean[current]
        regions = (0, 1) if region is None else (region,)  # None: either region may gain, neither may fall
        good = [c for c in options if any(mean[c][r] > base[r] + MIN_GAIN for r in regions)
                and all(mean[c][r] >= base[r] - MIN_GAIN for r in (0, 1))]
        best = max(good, key=lambda c: sum(mean[c][r] for r in regions), default=None)
        steps.append({"step": name, "kept": best is not None, "before": _pair(base),
                      "tried": [{**_step_value(c, name), "dice": _pair(mean[c])} for c in options],
                      **({"chosen": _step_value(best, name)} if best is not None else {})})  # fmt: skip
        current = best if best is not None else current

    if crf_scores is not None:
        consider("crf", None, [replace(current, crf=crf)])
    consider("keep_largest_liver", 0, [replace(current, keep_largest_liver=True)])
    consider("tumor_inside_liver", 1, [replace(current, tumor_inside_liver_dilation_mm=_dilation(configs))])
    consider("min_lesion_volume", 1, [replace(current, min_lesion_volume_mm3=v) for v in _grid(configs)])
    return {"chosen": current.to_dict(), "steps": steps, "cases": int(scores.shape[0]),
            "dice": {"none": _pair(mean[_NONE]), "chosen": _pair(mean[current])}}


def _pair(values) -> dict[str, float]:
    return {"liver": round(float(values[0]), 6), "tumor": round(float(values[1]), 6)}


def _step_value(config: PostprocessConfig, step: str) -> dict[str, Any]:
    if step == "crf":
        return {"crf": None if config.crf is None else config.crf.to_dict()}
    key = {"keep_largest_liver": "keep_largest_liver", "tumor_inside_liver": "tumor_inside_liver_dilation_mm",
           "min_lesion_volume": "min_lesion_volume_mm3"}[step]  # fmt: skip
    return {key: getattr(config, key)}


def _dilation(configs: Sequence[PostprocessConfig]) -> float:
    return next(c.tumor_inside_liver_dilation_mm for c in configs if c.tumor_inside_liver_dilation_mm is not None)


def _grid(configs: Sequence[PostprocessConfig]) -> list[float]:
    return sorted({c.min_lesion_volume_mm3 for c in configs} - {0.0})


def choose_postprocessing(root: str | os.PathLike, fold_cases: Sequence[Any], *, progress: bool = False,
                          grid_mm3: Sequence[float] = LESION_VOLUME_GRID_MM3,
                          ignore_label: int | None = None, crf: CrfSettings | None = None) -> dict[str, Any]:
    """Decide the post-processing on ``<root>/crossval/predictions`` (from :func:`~medseg.training.crossval.
    run_crossval`) against the references of ``fold_cases``; write and return ``<root>/postprocessing.json``.
    ``ignore_label``: the references' value of unannotated voxels, which are not scored (default: the folds'
    own, :attr:`~medseg.training.crossval.FoldCases.ignore_label`). ``crf``: the CRF is a candidate, on the
    maps it refined in ``<root>/crossval/predictions_crf`` (``None``: no CRF candidate)."""
    from medseg.data.naming import prediction_filename

    pred_dir = Path(root) / "crossval" / "predictions"
    crf_dir = Path(root) / "crossval" / CRF_PREDICTIONS
    if ignore_label is None:
        ignore_label = next((p.ignore_label for p in fold_cases if getattr(p, "ignore_label", None) is not None), None)
    pairs = [(pred_dir / prediction_filename(case.case_id), case.label,
              *((crf_dir / prediction_filename(case.case_id),) if crf is not None else ()))
             for part in fold_cases for case in part.cases]  # fmt: skip
    search = SearchSettings(grid_mm3=tuple(grid_mm3), ignore_label=ignore_label, progress=progress, crf=crf)
    return choose_postprocessing_on(pairs, Path(root) / POSTPROCESSING_FILE, search,
                                    extra={"predictions": str(pred_dir)})


@dataclass(frozen=True)
class SearchSettings:
    """How :func:`choose_postprocessing_on` reads the label maps and which volumes it tries.

    Attributes:
        labels: Which values of the predictions and references are liver and tumor (``None``: LiTS').
        ignore_label: The references' value of unannotated voxels (not scored), or ``None``.
        grid_mm3: Minimum lesion volumes tried (:data:`LESION_VOLUME_GRID_MM3`).
        progress: Progress bar over cases.
        crf: The CRF settings that refined each pair's third file, the CRF-refined prediction (``None``: the
            CRF is no candidate and the pairs hold two files).
    """

    labels: Any = None
    ignore_label: int | None = None
    grid_mm3: tuple[float, ...] = LESION_VOLUME_GRID_MM3
    progress: bool = False
    crf: CrfSettings | None = None


def choose_postprocessing_on(pairs: Sequence[tuple[Path, ...]], out_file: str | os.PathLike,
                             settings: SearchSettings | None = None, *, extra: Mapping[str, Any] | None = None
                             ) -> dict[str, Any]:
    """Decide the post-processing on raw predictions against their references, ``(prediction, reference)``
    file pairs, ``(prediction, reference, CRF-refined prediction)`` with ``settings.crf`` (each prediction
    brought onto its reference's grid, all mapped to LiTS' labels by ``settings.labels``); write the result,
    with ``extra``, to ``out_file`` and return it."""
    from tqdm.auto import tqdm

    from medseg.io.label_map import LITS_MAPPING
    from medseg.io.orientation import align_to
    from medseg.io.reader import read_label_map
    from medseg.utils.atomic import atomic_write_json

    settings = settings or SearchSettings()
    configs = candidates(settings.grid_mm3)
    mapping = settings.labels or LITS_MAPPING

    plain, refined = [], []
    for pred_path, ref_path, *crf_path in tqdm(pairs, desc="post-processing", unit="scan",
                                               disable=not settings.progress):  # fmt: skip
        ref = read_label_map(ref_path, labels=mapping.with_ignore(settings.ignore_label))
        maps = [(pred_path, plain)] + ([(crf_path[0], refined)] if settings.crf is not None else [])
        for path, table in maps:
            pred = align_to(read_label_map(path, labels=settings.labels), ref, what="out-of-fold prediction",
                            reference_what="reference")  # fmt: skip
            case = (np.asarray(pred.array), np.asarray(ref.array), ref.spacing_mm, ref.affine)
            table.append(score_combinations([case], configs, ignore_label=settings.ignore_label))
    scores = np.concatenate(plain) if plain else np.zeros((0, len(configs), 2))
    result = decide(scores, configs, crf_scores=np.concatenate(refined) if refined else None, crf=settings.crf)
    result.update(extra or {})
    atomic_write_json(Path(out_file), result)
    logger.info("post-processing chosen on %d cross-validation cases: %s", result["cases"], result["chosen"])
    return result
