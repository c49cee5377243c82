"""Everything before the first iteration: the data set (or the built-in phantom), its check, folds,
the preprocessing plan and the preprocessed cache.

Cross-validation folds (:mod:`medseg.training.splits`) follow nnU-Net: a deterministic, seeded K-fold
split of the sorted case ids (Isensee et al. 2021), or of the patients, or the user's own split; they are
saved as ``folds.json`` in the run folder so every fold of one data set agrees even if files are added later.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError, DataError
from medseg.training.config import PipelineConfig
from medseg.training.splits import make_folds, split_for
from medseg.utils.cache_home import medseg_cache_dir

__all__ = ["PreparedData", "cache_dir_for", "default_cache_root", "make_folds", "plan_cache_dir", "prepare_data",
           "resolve_data_root"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """Preprocessed data ready for the loop."""

    root: Path
    cache_dir: Path
    plan: Any  # medseg.preprocessing.PreprocessingPlan
    folds: list[dict[str, list[str]]]
    train_ids: list[str]
    val_ids: list[str]


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/medseg`` or ``~/.cache/medseg`` (:func:`~medseg.utils.cache_home.medseg_cache_dir`):
    generated phantom data and preprocessed arrays."""
    return medseg_cache_dir()


def resolve_data_root(config: PipelineConfig, data: str | os.PathLike | None) -> tuple[Path, bool]:
    """The data set folder: ``data`` (``--data``), else ``data.root``, else the built-in phantom set.

    The phantom set (``data.phantom_cases`` cases of size ``data.phantom_size``) is generated on first use
    into ``~/.cache/medseg/phantom-<size>-seed<seed>-n<cases>``. Returns ``(root, is_phantom)``.
    """
    if data is not None or config.data.root is not None:
        root = Path(data if data is not None else config.data.root)
        if not root.is_dir():
            raise DataError("data set folder not found", path=root)
        return root, False
    d = config.data
    root = default_cache_root() / f"phantom-{d.phantom_size}-seed{d.phantom_seed}-n{d.phantom_cases}"
    logger.warning("no data set given (--data) or configured (data.root): training on the built-in phantom set %s",
                   root)
    if not (root / "manifest.json").is_file():
        from medseg.data import write_phantom_dataset

        logger.warning("generating %d %s phantom cases (first use)", d.phantom_cases, d.phantom_size)
        write_phantom_dataset(root, cases=d.phantom_cases, size=d.phantom_size, seed=d.phantom_seed)
    return root, True


def _labelled_cases(root: Path, *, workers: int | None, ignore_label: int | None = None) -> list[Any]:
    """Run ``medseg check`` on ``root`` and return its labelled cases; errors stop training.

    ``ignore_label`` is ``data.ignore_label``; a ``dataset.json`` that declares another one (or one the
    pipeline does not declare) is a :class:`~medseg.errors.ConfigError`, since the losses must know it.
    """
    from medseg.data.check import check_dataset
    from medseg.data.discovery import discover_dataset

    declared = discover_dataset(root, report_orphans=False).ignore_label
    if declared is not None and ignore_label != declared:
        raise ConfigError(f"dataset.json declares the ignore label {declared} (unannotated voxels); set "
                          f"data.ignore_label: {declared} in the pipeline (got {ignore_label})", path=root)
    report = check_dataset(root, workers=workers, progress=False, ignore_label=ignore_label)
    if not report.ok:
        first = report.errors[0]
        raise DataError(
            f"the data set fails `medseg check` ({len(report.errors)} error(s), first: case {first.case_id}: "
            f"{first.message}); run `medseg check {root}` for the full table",
            path=root,
        )
    cases = [c for c in discover_dataset(root) if c.label is not None]
    if not cases:
        raise DataError("the data set has no labelled cases to train on", path=root)
    return cases


def prepare_data(
    config: PipelineConfig,
    *,
    data: str | os.PathLike | None,
    fold: int,
    folds: list[dict[str, list[str]]] | None = None,
    plan: Any = None,
    workers: int | None = None,
) -> PreparedData:
    """Check the data set, split folds, plan and preprocess (cached); see the module docstring.

    Args:
        config: The resolved pipeline.
        data: ``--data`` folder or ``None`` (config, then phantom).
        fold: Fold index ``0 .. data.folds - 1``.
        folds: Saved folds of a resumed run (reused as they are).
        plan: Saved ``PreprocessingPlan`` of a resumed run (reused; no new fingerprint).
        workers: Worker processes for checking and preprocessing.

    Raises:
        ConfigError: ``fold`` out of range.
        DataError: The data set is missing, fails the check, or has too few cases.
    """
    from medseg.preprocessing import compute_fingerprint, plan_from_fingerprint, preprocess_dataset
    from medseg.training.memory_budget import check_memory_budget

    if not 0 <= fold < config.data.folds:
        raise ConfigError(f"--fold must be in 0..{config.data.folds - 1}, got {fold}")
    root, _ = resolve_data_root(config, data)
    cases = _labelled_cases(root, workers=workers, ignore_label=config.data.ignore_label)
    folds = folds or split_for(config.data, cases)
    known = {c.case_id for c in cases}
    missing = sorted(set(folds[fold]["train"] + folds[fold]["val"]) - known)
    if missing:
        raise DataError(f"cases {missing[:5]} of the saved folds are no longer in the data set", path=root)
    if plan is None:
        p = config.preprocessing
        fingerprint = compute_fingerprint(cases, workers=workers, progress=None, ignore_label=config.data.ignore_label)
        plan = plan_from_fingerprint(
            fingerprint, normalization=p.normalization, target_spacing_mm=p.target_spacing_mm, window_hu=p.window_hu
        )
        check_memory_budget(config, plan, fingerprint)  # before anything is resampled or a batch allocated
    cache_dir = plan_cache_dir(cache_dir_for(config, root), plan)
    preprocess_dataset(cases, cache_dir, plan, workers=workers)
    return PreparedData(
        root=root, cache_dir=cache_dir, plan=plan, folds=folds, train_ids=folds[fold]["train"],
        val_ids=folds[fold]["val"],
    )  # fmt: skip


def cache_dir_for(config: PipelineConfig, root: str | os.PathLike) -> Path:
    """The preprocessed caches of data set ``root``: ``data.cache_dir``, else one per data set folder under
    ``~/.cache/medseg/preprocessed``; each plan has its own sub-folder in it (:func:`plan_cache_dir`).

    Raises:
        ConfigError: ``data.cache_dir`` is the data set folder or inside it: the cache index
            (``dataset.json``) and the arrays would be written among the input files.
    """
    if not config.data.cache_dir:
        return _default_cache_dir(Path(root))
    cache, data = Path(config.data.cache_dir).resolve(), Path(root).resolve()
    where = ("is the data set folder" if cache == data
             else "is inside the data set folder" if data in cache.parents else "")
    if where:
        raise ConfigError(f"data.cache_dir {config.data.cache_dir} {where} {data}: the preprocessed cache is never "
                          "written among the input files; choose a folder outside it")
    return Path(config.data.cache_dir)


def plan_cache_dir(base: str | os.PathLike, plan: Any) -> Path:
    """``base/plan-<12 hex>``: the cache of one preprocessing plan (a SHA-256 of :meth:`PreprocessingPlan.to_dict`).

    Two trainings on one data set with different plans (normalisation, spacing, window) never share files,
    so one cannot overwrite the arrays the other trains and validates on; the same plan shares its cache.
    """
    text = json.dumps(plan.to_dict(), sort_keys=True, default=str)
    return Path(base) / f"plan-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _default_cache_dir(root: Path) -> Path:
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]
    return default_cache_root() / "preprocessed" / f"{root.resolve().name}-{digest}"
