"""Cross-validation report of a folder of fold runs: every case predicted once, by the fold that did not train on it.

``medseg train --fold all`` leaves ``<root>/fold<K>/`` run folders; each holds ``folds.json`` (the split:
every fold's training and validation case ids, the same in every fold run) and ``data.json`` (the data
set). :func:`run_crossval` predicts each fold's validation cases with that fold's model on their original
scan grids (the out-of-fold predictions, without post-processing, so that
:mod:`medseg.training.postprocessing_search` can choose it on them), evaluates all of them together with
:func:`medseg.evaluation.evaluate_pair` (the ``medseg`` or ``lits2017`` protocol) and writes::

    <root>/crossval/
        predictions/<case>_seg.nii.gz   out-of-fold label maps (raw: no post-processing)
        predictions_crf/<case>_seg.nii.gz  the same after the dense CRF (the CRF candidate; not with crf=None)
        per_case.csv                    one row per case, with its fold
        lesions.csv                     reference lesions
        summary.json                    per fold and pooled (all cases together) summaries, the split
        folds.png                       per-case Dice per fold, with the pooled mean
        boxplots.png, volumes.png       as medseg evaluate draws them

This is the k-fold cross-validation that nnU-Net (Isensee et al. 2021, *Nature Methods* 18:203) reports
and bases its post-processing on; "pooled" means the cases of all folds evaluated as one cohort (global
Dice from the summed voxel counts, means over all cases), not the mean of the fold means.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from medseg.data.discovery import Case, discover_dataset
from medseg.data.naming import prediction_filename
from medseg.errors import DataError
from medseg.inference.crf import CrfSettings
from medseg.inference.ensemble import find_fold_runs, fold_checkpoint
from medseg.inference.postprocess import PostprocessConfig
from medseg.inference.predictor import InferenceSettings
from medseg.io.label_map import LabelMapping
from medseg.training.postprocessing_search import CRF_PREDICTIONS

__all__ = [
    "CROSSVAL_DIR",
    "NO_POSTPROCESSING",
    "CrossvalSettings",
    "FoldCases",
    "out_of_fold_cases",
    "predict_out_of_fold",
    "run_crossval",
    "write_crossval_report",
]  # fmt: skip

logger = logging.getLogger(__name__)

#: The report's folder inside the folder of fold runs.
CROSSVAL_DIR = "crossval"

#: Post-processing of the out-of-fold predictions: none (it is chosen on them afterwards).
NO_POSTPROCESSING = PostprocessConfig(keep_largest_liver=False, tumor_inside_liver_dilation_mm=None,
                                      min_lesion_volume_mm3=0.0)  # fmt: skip


@dataclass(frozen=True)
class FoldCases:
    """One fold's run folder, its validation cases (image and reference label map) and the references'
    ignore value (the run's ``data.ignore_label``: partial annotations, scored on annotated voxels only)."""

    fold: int
    run: Path
    cases: tuple[Case, ...]
    ignore_label: int | None = None


@dataclass(frozen=True)
class CrossvalSettings:
    """How :func:`run_crossval` predicts and evaluates.

    Attributes:
        inference: Predictor settings (its ``postprocessing`` is replaced by :data:`NO_POSTPROCESSING`).
        folds: Only these folds (``None``: every trained fold).
        protocol: Evaluation protocol, ``"medseg"`` or ``"lits2017"``.
        device: Where the networks run (``"auto"``: CUDA when available).
        data: The data set folder when it moved since training (``None``: each run's ``data.json``).
        figures: Draw the figures.
        progress: Progress bar over cases.
        crf: The dense CRF's settings: each case is also refined by it (from the same network pass) into
            ``predictions_crf/``, so that the post-processing search can try it (``None``: no CRF candidate).
    """

    inference: InferenceSettings = field(default_factory=InferenceSettings)
    folds: tuple[int, ...] | None = None
    protocol: str = "medseg"
    device: str = "auto"
    data: str | os.PathLike | None = None
    figures: bool = True
    progress: bool = False
    crf: CrfSettings | None = field(default_factory=CrfSettings)


def out_of_fold_cases(root: str | os.PathLike, folds: Sequence[int] | None = None,
                      data: str | os.PathLike | None = None) -> list[FoldCases]:
    """Each trained fold's validation cases, read from its ``folds.json`` and its data set.

    Raises:
        DataError: No trained fold; fold runs split differently; a case in two validation folds; a
            validation case missing from the data set or without a label map.
    """
    from medseg.training.run_files import read_data_record

    result, split, seen = [], None, {}
    for run in find_fold_runs(root, folds):
        fold, this_split = _read_split(run)
        if split is not None and this_split != split:
            raise DataError("this fold run was split differently from the others (folds.json)", path=run)
        split = this_split
        record = read_data_record(run)
        data_root = Path(data) if data is not None else (record.root if record else None)
        if data_root is None:
            raise DataError("no data.json: which data set was this fold trained on? (give --data)", path=run)
        by_id = {case.case_id: case for case in discover_dataset(data_root)}
        cases = []
        for case_id in split[fold]["val"]:
            if case_id in seen:
                raise DataError(f"case {case_id} is a validation case of folds {seen[case_id]} and {fold}", path=run)
            seen[case_id] = fold
            case = by_id.get(case_id)
            if case is None or case.label is None:
                raise DataError(f"validation case {case_id} has no image with a label map in {data_root}", path=run)
            cases.append(case)
        result.append(FoldCases(fold=fold, run=run, cases=tuple(cases), ignore_label=_ignore_label(run, data_root)))
    return result


def _ignore_label(run: Path, data_root: Path) -> int | None:
    """The run's ``data.ignore_label``, else the one its data set's ``dataset.json`` declares."""
    from medseg.data.discovery import discover_dataset
    from medseg.errors import MedsegError
    from medseg.training.run_files import load_run_config

    try:
        value = load_run_config(run).data.ignore_label
    except (MedsegError, OSError):
        value = None
    return value if value is not None else discover_dataset(data_root, report_orphans=False).ignore_label


def _read_split(run: Path) -> tuple[int, list[dict[str, list[str]]]]:
    path = run / "folds.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        fold, split = int(record["fold"]), [{"train": list(p["train"]), "val": list(p["val"])}
                                            for p in record["folds"]]  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"not a fold run's folds.json ({type(exc).__name__}: {exc})", path=path) from None
    if not 0 <= fold < len(split):
        raise DataError(f"fold {fold} is not one of the {len(split)} folds", path=path)
    return fold, split


def predict_out_of_fold(fold_cases: Sequence[FoldCases], pred_dir: str | os.PathLike,
                        settings: CrossvalSettings) -> dict[str, int]:
    """Each fold's validation cases predicted by that fold's model (no post-processing), written as
    ``pred_dir/<case>_seg.nii.gz`` on the scan's grid (with ``settings.crf`` also refined by the dense CRF
    into ``pred_dir/../predictions_crf/``); returns case id -> fold.

    The model is the fold's final ``last.pt`` (:func:`~medseg.inference.ensemble.fold_checkpoint`, as
    nnU-Net's cross-validation uses its final checkpoint): ``best.pt`` was selected on these very cases, so
    its Dice on them would be optimistic. The fold ensemble of ``predict`` uses the same checkpoints.
    """
    from tqdm.auto import tqdm

    from medseg.inference.predictor import Predictor
    from medseg.io import read_volume, write_volume

    pred_dir, crf_dir = Path(pred_dir), Path(pred_dir).parent / CRF_PREDICTIONS
    for folder in (pred_dir, *((crf_dir,) if settings.crf is not None else ())):
        folder.mkdir(parents=True, exist_ok=True)
    inference = replace(settings.inference, postprocessing=NO_POSTPROCESSING, probabilities=False)
    fold_of = {}
    bar = tqdm(total=sum(len(f.cases) for f in fold_cases), desc="crossval", unit="scan",
               disable=not settings.progress)  # fmt: skip
    with bar:
        for part in fold_cases:
            predictor = Predictor.from_run(fold_checkpoint(part.run), device=settings.device, settings=inference)
            for case in part.cases:
                volume = read_volume(case.image)
                if settings.crf is None:
                    labels = predictor(volume)
                else:
                    labels, refined, stats = predictor.predict_with_crf(volume, settings.crf)
                    for finding in stats["warnings"]:  # as predictor(volume) logs them
                        logger.warning("%s: %s", case.image, finding)
                    write_volume(refined, crf_dir / prediction_filename(case.case_id), label=True)
                write_volume(labels, pred_dir / prediction_filename(case.case_id), label=True)
                fold_of[case.case_id] = part.fold
                bar.update()
    return fold_of


def run_crossval(root: str | os.PathLike, settings: CrossvalSettings | None = None) -> dict[str, Any]:
    """Predict, evaluate and report the out-of-fold predictions of ``root`` (see the module doc).

    Returns:
        The summary written to ``<root>/crossval/summary.json``.
    """
    settings = settings or CrossvalSettings()
    root = Path(root)
    fold_cases = out_of_fold_cases(root, settings.folds, settings.data)  # every check before any work
    out = root / CROSSVAL_DIR
    fold_of = predict_out_of_fold(fold_cases, out / "predictions", settings)
    per_case, lesions, summary = evaluate_out_of_fold(fold_cases, out / "predictions", settings.protocol)
    summary["fold_of_case"] = fold_of
    write_crossval_report(out, per_case, lesions, summary, figures=settings.figures and settings.protocol == "medseg")
    return summary


def evaluate_out_of_fold(fold_cases: Sequence[FoldCases], pred_dir: str | os.PathLike | Mapping[str, Path],
                         protocol: str = "medseg", *, labels: LabelMapping | None = None
                         ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Per-case table (with ``fold``), lesion table and summary (``pooled`` and per fold) of the
    out-of-fold predictions in ``pred_dir`` (``<case>_seg.nii.gz``), or of the files of a mapping case id
    -> prediction (nnU-Net's ``fold_K/validation/<case>.nii.gz``).

    ``labels``: which values of the predictions and references are liver and tumor (default LiTS'; an
    nnU-Net model's classes with ``--labels liver=5``); each fold's ignore value is added for the references.
    """
    from medseg.evaluation.case import EvaluationConfig
    from medseg.evaluation.cohort import lesions_dataframe, to_dataframe
    from medseg.evaluation.matching import CasePair
    from medseg.evaluation.protocols import summarize_protocol
    from medseg.evaluation.runner import evaluate_pair
    from medseg.io.label_map import LITS_MAPPING

    mapping = labels or LITS_MAPPING
    results, fold_column = [], []
    for part in fold_cases:
        for case in part.cases:
            pred = (pred_dir[case.case_id] if isinstance(pred_dir, Mapping)
                    else Path(pred_dir) / prediction_filename(case.case_id))  # fmt: skip
            pair = CasePair(case=case.case_id, ref=case.label, pred=pred)
            ref_labels = mapping.with_ignore(part.ignore_label)  # partial references: annotated voxels only
            results.append(evaluate_pair(pair, EvaluationConfig(), protocol, labels=ref_labels,
                                         pred_labels=None if labels is None else mapping))  # fmt: skip
            fold_column.append(part.fold)
    per_case = to_dataframe(results)
    per_case.insert(1, "fold", fold_column)
    lesions = lesions_dataframe(results)
    case_fold = dict(zip(per_case["case"], per_case["fold"]))
    summary: dict[str, Any] = {"pooled": summarize_protocol(protocol, per_case.drop(columns="fold"), lesions)}
    summary["folds"] = {}
    for part in fold_cases:
        ids = [c.case_id for c in part.cases]
        sub = per_case[per_case["fold"] == part.fold].drop(columns="fold")
        sub_lesions = lesions[lesions["case"].map(case_fold) == part.fold] if len(lesions) else lesions
        summary["folds"][str(part.fold)] = {"run": str(part.run), "cases": ids,
                                            **summarize_protocol(protocol, sub, sub_lesions)}  # fmt: skip
    summary["dice"] = dice_table(per_case)
    return per_case, lesions, summary


def dice_table(per_case: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Mean per-case Dice and global Dice (summed voxel counts) of liver and tumor, per fold and pooled
    (the ``medseg`` protocol's columns, or the ``lits2017`` scorer's ``liver_dice``/``lesion_dice_per_case``
    with its intersections ``*_I`` and sums ``*_S``; empty for a table with neither)."""
    if "liver_dice" not in per_case:
        return {}

    def row(frame: pd.DataFrame) -> dict[str, float]:
        out = {"cases": len(frame)}
        for region in ("liver", "tumor"):
            dice, inter, both = _dice_columns(frame, region)
            out[f"{region}_dice_mean"] = float(dice.mean())
            out[f"{region}_dice_global"] = float(2 * inter.sum() / both.sum()) if both.sum() else float("nan")
        return out

    table = {f"fold{k}": row(frame) for k, frame in per_case.groupby("fold")}
    table["pooled"] = row(per_case)
    return table


def _dice_columns(frame: pd.DataFrame, region: str) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Per-case Dice, intersection and pred + ref voxel counts of ``region`` in either protocol's table."""
    if f"{region}_pred_voxels" in frame:  # medseg
        both = frame[f"{region}_pred_voxels"] + frame[f"{region}_ref_voxels"]
        return frame[f"{region}_dice"], frame[f"{region}_intersection_voxels"], both
    name = "liver" if region == "liver" else "lesion"  # lits2017: tumor is "lesion", S = |pred| + |ref|
    return frame["liver_dice" if region == "liver" else "lesion_dice_per_case"], frame[f"{name}_I"], frame[f"{name}_S"]


def write_crossval_report(out: Path, per_case: pd.DataFrame, lesions: pd.DataFrame, summary: dict, *,
                          figures: bool) -> None:
    """``per_case.csv``, ``lesions.csv``, ``summary.json`` and the figures (``folds.png`` too; the ``medseg``
    protocol's columns: ``lits2017`` draws none, as ``medseg evaluate``) in ``out``."""
    from medseg.evaluation.report import write_report

    files = write_report(out, per_case, summary, lesions=lesions, figures=figures)
    if figures and "liver_dice" in per_case:
        plot_folds(per_case, out / "folds.png")
    logger.info("cross-validation report in %s (%s)", out, ", ".join(sorted(p.name for p in files.values())))




def plot_folds(per_case: pd.DataFrame, path: Path) -> Path:
    """Per-case liver and tumor Dice per fold (points), each fold's mean (bar) and the pooled mean (line)."""
    import matplotlib.pyplot as plt

    from medseg.utils.atomic import atomic_path

    folds = sorted(per_case["fold"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True)
    for ax, region in zip(axes, ("liver", "tumor")):
        values = [per_case.loc[per_case["fold"] == k, f"{region}_dice"].astype(float) for k in folds]
        ax.bar(range(len(folds)), [v.mean() for v in values], color="#cfd8dc")
        for i, v in enumerate(values):
            ax.plot([i] * len(v), v, "o", color="#37474f", ms=4)
        pooled = per_case[f"{region}_dice"].astype(float).mean()
        ax.axhline(pooled, color="#c62828", lw=1, label=f"all cases: {pooled:.3f}")
        ax.set_xticks(range(len(folds)), [f"fold {k}" for k in folds])
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{region} Dice (out of fold)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("Dice per case")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path
