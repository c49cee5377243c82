"""The files of a training run folder besides checkpoints, read back and checked before they are used.

A run folder holds ``config.yaml`` (the resolved pipeline), ``folds.json`` (the fold and the split),
``plan.json`` (the preprocessing plan) and ``data.json`` (the data set and cache folders). ``--resume``
takes the fold, the config and the data set from them, so each reader here checks its file and raises
one :class:`~medseg.errors.MedsegError` line naming it (invalid YAML or JSON, not UTF-8, a list where a
mapping belongs, a fold out of range...) instead of a traceback later.

:func:`check_resume` refuses a resume whose flags contradict the folder: another fold, another data
set, or a change to a section that defines the trained network or its data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError, DataError, MedsegError
from medseg.runs.provenance import TrainingData
from medseg.training.config import PipelineConfig
from medseg.training.loader import config_from_dict
from medseg.training.overrides import apply_overrides
from medseg.utils.atomic import atomic_write_json, atomic_write_text
from medseg.utils.yamlfile import read_bounded, read_yaml

__all__ = [
    "FROZEN_ON_RESUME",
    "RunData",
    "check_resume",
    "load_run_config",
    "read_data_record",
    "read_folds",
    "read_plan",
    "training_data_of",
    "write_data_record",
    "write_prepared",
    "write_run_config",
]

#: What a resume may not change: the network, its loss, the data and how it was preprocessed and cut.
FROZEN_ON_RESUME = ("model", "loss", "data", "preprocessing", "training.patch_size", "training.context_slices",
                    "training.init_from", "training.init_fold", "training.init_plan")
_MAX_JSON_BYTES = 64 << 20


@dataclass(frozen=True)
class RunData:
    """``data.json``: the data set a run trains on and its preprocessed cache."""

    root: Path
    cache_dir: Path


def _read_json(path: Path) -> Any:
    raw = read_bounded(path, max_bytes=_MAX_JSON_BYTES, error=DataError, too_large="too large to be a run file")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text", path=path) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg}, line {exc.lineno})", path=path) from None


def _config_path(run_dir: Path) -> Path:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise DataError("no config.yaml: not a medseg run folder (nothing to resume)", path=run_dir)
    return path


def load_run_config(run_dir: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """The resolved config saved in a run folder, with ``--set`` overrides applied (for ``--resume``).

    Raises:
        DataError: No ``config.yaml`` (not a run folder).
        ConfigError: ``config.yaml`` is not UTF-8, not valid YAML, not a mapping, or holds an invalid
            value (the message names the file), or an override is invalid.
    """
    path = _config_path(Path(run_dir))
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping of pipeline sections, got {type(raw).__name__}", path=path)
    try:
        saved = config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(str(exc), path=path) from None
    if not overrides:
        return saved
    return config_from_dict(apply_overrides(saved.to_dict(), overrides))


def write_run_config(run_dir: Path, config: PipelineConfig) -> None:
    """Write ``config.yaml`` (creating the folder) unless it already holds exactly this config."""
    path = run_dir / "config.yaml"
    text = config.to_yaml()
    if path.is_file() and path.read_bytes() == text.encode("utf-8"):
        return
    atomic_write_text(path, text)


def read_folds(run_dir: Path, n_folds: int) -> tuple[int, list[dict[str, list[str]]]] | None:
    """``(fold, folds)`` from ``folds.json``, or ``None`` when the run has not written it yet.

    Raises:
        DataError: The file is unreadable, or not ``{"fold": k, "folds": [{"train": [...], "val": [...]}]}``
            with ``n_folds`` folds and ``0 <= k < n_folds``.
    """
    path = run_dir / "folds.json"
    if not path.exists():
        return None
    record = _read_json(path)
    folds = record.get("folds") if isinstance(record, dict) else None
    fold = record.get("fold") if isinstance(record, dict) else None
    if not isinstance(folds, list) or len(folds) != n_folds:
        raise DataError(f"expected {{'fold': k, 'folds': [...]}} with {n_folds} folds (data.folds)", path=path)
    if not isinstance(fold, int) or isinstance(fold, bool) or not 0 <= fold < n_folds:
        raise DataError(f"'fold' must be an integer in 0..{n_folds - 1}, got {fold!r}", path=path)
    for i, part in enumerate(folds):
        ok = isinstance(part, dict) and set(part) == {"train", "val"}
        ok = ok and all(isinstance(part[k], list) and all(isinstance(c, str) for c in part[k]) for k in part)
        if not ok:
            raise DataError(f"folds[{i}] must be {{'train': [case ids], 'val': [case ids]}}", path=path)
    return fold, folds


def read_plan(run_dir: Path) -> Any:
    """The :class:`~medseg.preprocessing.PreprocessingPlan` of ``plan.json``, or ``None`` when absent.

    Raises:
        DataError: The file is unreadable or not a valid plan; the message names it.
    """
    from medseg.preprocessing import PreprocessingPlan

    path = run_dir / "plan.json"
    if not path.exists():
        return None
    record = _read_json(path)
    if not isinstance(record, dict):
        raise DataError(f"expected a mapping of plan keys, got {type(record).__name__}", path=path)
    try:
        return PreprocessingPlan.from_dict(record)
    except (MedsegError, TypeError, ValueError) as exc:
        raise DataError(f"not a valid preprocessing plan ({exc})", path=path) from None


def read_data_record(run_dir: Path) -> RunData | None:
    """``data.json`` (:class:`RunData`), or ``None`` when absent.

    Raises:
        DataError: The file is unreadable or lacks the ``root`` / ``cache_dir`` strings.
    """
    path = run_dir / "data.json"
    if not path.exists():
        return None
    record = _read_json(path)
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("root", "cache_dir")):
        raise DataError("expected {'root': folder, 'cache_dir': folder}", path=path)
    return RunData(Path(record["root"]), Path(record["cache_dir"]))


def write_data_record(run_dir: Path, root: str | os.PathLike, cache_dir: str | os.PathLike) -> None:
    """Write ``data.json``; a new run writes it before the data is prepared, so that a run killed while
    preparing resumes on the same data set."""
    atomic_write_json(run_dir / "data.json", {"root": str(root), "cache_dir": str(cache_dir)})


def write_prepared(run_dir: Path, prepared: Any, *, fold: int, fold_seed: int) -> None:
    """Write ``plan.json``, ``folds.json`` and ``data.json`` (with what the run trains on,
    :func:`training_data_of`) of prepared data (``PreparedData``)."""
    atomic_write_json(run_dir / "plan.json", prepared.plan.to_dict())
    atomic_write_json(run_dir / "folds.json", {"fold": fold, "seed": fold_seed, "folds": prepared.folds})
    atomic_write_json(run_dir / "data.json", {"root": str(prepared.root), "cache_dir": str(prepared.cache_dir),
                                              "training_data": training_data_of(prepared).to_dict()})


def training_data_of(prepared: Any) -> TrainingData:
    """What a run trains on: its data set folder (name, absolute path, phantom or not) and the number of
    training cases of its fold (``PreparedData``)."""
    return TrainingData.from_dataset(prepared.root, n_cases=len(prepared.train_ids))


def _section(config: PipelineConfig, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def check_resume(run_dir: Path, config: PipelineConfig, *, fold: int | None, data: str | os.PathLike | None
                 ) -> tuple[int, Path | None]:
    """The fold and data set of a resumed run, after refusing flags that contradict the run folder.

    Args:
        run_dir: The run folder.
        config: The config the resume would train with (the saved one plus ``--set`` overrides).
        fold: ``--fold`` (``None``: the run's).
        data: ``--data`` (``None``: the run's).

    Returns:
        ``(fold, data)``: the run's fold (``fold`` or 0 when the run has no ``folds.json`` yet) and data
        set folder (``None`` when the run has no ``data.json`` yet and none is given).

    Raises:
        ConfigError: A flag or override contradicts the folder, naming both values.
        DataError: A run file is unreadable or malformed.
    """
    saved = load_run_config(run_dir)
    if config.data.root is None and saved.data.root is not None:  # the saved config names the data set it trained
        config = replace(config, data=replace(config.data, root=saved.data.root))  # on; "not given" is no change
    for key in FROZEN_ON_RESUME:
        if _section(saved, key) != _section(config, key):
            raise ConfigError(f"--resume cannot change {key} (it defines the trained run); start a new run "
                              f"with another --out instead", path=run_dir / "config.yaml")  # fmt: skip
    folds = read_folds(run_dir, saved.data.folds)
    if folds is not None and fold is not None and fold != folds[0]:
        raise ConfigError(f"--fold {fold} contradicts the run's fold {folds[0]} (folds.json); drop --fold "
                          "or use the run folder of that fold", path=run_dir)  # fmt: skip
    record = read_data_record(run_dir)
    if record is not None and data is not None and Path(data).resolve() != record.root.resolve():
        raise ConfigError(f"--data {data} contradicts the run's data set {record.root} (data.json); drop --data",
                          path=run_dir)  # fmt: skip
    run_fold = folds[0] if folds is not None else (fold or 0)
    return run_fold, record.root if record is not None else (Path(data) if data is not None else None)
