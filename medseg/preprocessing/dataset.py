"""Preprocess a data set once into a cache of memory-mappable arrays, re-used while nothing changed.

Layout of ``out_dir``::

    dataset.json          plan, cache key, per-case keys and shapes
    <case_id>.image.npy   float32 (X, Y, Z), canonical R, A, S, target spacing (np.load(mmap_mode="r"))
    <case_id>.label.npy   uint8   (X, Y, Z), same grid (absent when the case has no label)
    <case_id>.json        PreprocessRecord, spacing, class voxel counts and sampled class locations

A case is recomputed only when its key changes: the key hashes the plan, this format's version and the
input files' paths, sizes and modification times (or the array hash of an in-memory Volume). Files are
written atomically, the case JSON last, so an interrupted run never leaves a case that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import DataError
from medseg.preprocessing.cases import CaseSpec, as_case_spec, input_signature, load_case_volumes
from medseg.preprocessing.plan import PreprocessingPlan
from medseg.preprocessing.transform import PreprocessRecord, preprocess_image, preprocess_label
from medseg.utils.atomic import atomic_path, atomic_write_json
from medseg.utils.progress import tqdm_disable

__all__ = ["CACHE_FORMAT_VERSION", "PreprocessedCase", "load_preprocessed", "preprocess_dataset", "read_cache_index"]

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
DEFAULT_LOCATIONS_PER_CLASS = 10_000


@dataclass(frozen=True)
class PreprocessedCase:
    """A case read back from the cache.

    Attributes:
        case_id: The case id.
        image: float32 ``(X, Y, Z)`` (a read-only memory map unless loaded with ``mmap=False``).
        label: uint8 ``(X, Y, Z)`` or ``None``.
        record: Geometry record to map predictions back to the scan.
        spacing_mm: Spacing of the preprocessed grid.
        class_locations: class -> ``(N, 3)`` int array of sampled voxel indices of that class.
        meta: The rest of the case JSON (``class_voxels``, ``image_min``, ``inputs``...).
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    record: PreprocessRecord
    spacing_mm: tuple[float, float, float]
    class_locations: dict[int, np.ndarray]
    meta: dict[str, Any]


def _case_key(plan: PreprocessingPlan, spec: CaseSpec, locations_per_class: int) -> str:
    payload = {
        "format": CACHE_FORMAT_VERSION,
        "plan": plan.to_dict(),
        "case_id": spec.case_id,
        "image": input_signature(spec.image),
        "label": input_signature(spec.label),
        "locations_per_class": locations_per_class,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _sample_class_locations(label: np.ndarray, count: int, seed: int) -> tuple[dict[str, list], dict[str, int]]:
    """Up to ``count`` random voxel indices of every class > 0 present, and every class's voxel count."""
    rng = np.random.default_rng([seed, 4_242])
    counts = np.bincount(label.ravel(), minlength=1)
    locations: dict[str, list] = {}
    for cls in np.flatnonzero(counts)[1:] if counts.size > 1 else []:
        coords = np.argwhere(label == cls)
        if len(coords) > count:
            coords = coords[np.sort(rng.choice(len(coords), count, replace=False))]
        locations[str(int(cls))] = coords.astype(int).tolist()
    return locations, {str(c): int(n) for c, n in enumerate(counts) if n}


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, array)


def _preprocess_case(job: tuple[CaseSpec, str, dict, str, int]) -> dict[str, Any]:
    """Worker: read, preprocess and write one case; returns its index entry."""
    spec, out_dir, plan_dict, key, locations_per_class = job
    _single_thread_in_worker()
    out = Path(out_dir)
    plan = PreprocessingPlan.from_dict(plan_dict)
    image, label = load_case_volumes(spec)
    array, record = preprocess_image(image, plan)
    _save_npy(out / f"{spec.case_id}.image.npy", array)
    meta: dict[str, Any] = {
        "case_id": spec.case_id,
        "cache_key": key,
        "shape": list(array.shape),
        "spacing_mm": list(record.spacing_after_mm),
        "image_min": float(array.min()),
        "image_max": float(array.max()),
        "has_label": label is not None,
        "inputs": {"image": input_signature(spec.image), "label": input_signature(spec.label)},
        "record": record.to_dict(),
    }
    if label is not None:
        labels = preprocess_label(label, record)
        _save_npy(out / f"{spec.case_id}.label.npy", labels)
        seed = int(hashlib.sha256(spec.case_id.encode()).hexdigest()[:8], 16)
        meta["class_locations"], meta["class_voxels"] = _sample_class_locations(labels, locations_per_class, seed)
    atomic_write_json(out / f"{spec.case_id}.json", meta)
    return {"case_id": spec.case_id, "cache_key": key, "shape": meta["shape"], "spacing_mm": meta["spacing_mm"],
            "has_label": meta["has_label"], "class_voxels": meta.get("class_voxels", {})}


def _single_thread_in_worker() -> None:
    """In a forked worker process, use one torch thread: an OpenMP thread pool inherited from a parent that
    already ran a multi-threaded torch op deadlocks at the first parallel op (GNU OpenMP is not fork-safe),
    and one thread per worker is the right share anyway. The calling process is left alone."""
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        import torch

        torch.set_num_threads(1)


def _cached_entry(out: Path, spec: CaseSpec, key: str) -> dict[str, Any] | None:
    """The index entry of a case already in the cache with ``key``, or None."""
    meta_path = out / f"{spec.case_id}.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    needed = [out / f"{spec.case_id}.image.npy"]
    if meta.get("has_label"):
        needed.append(out / f"{spec.case_id}.label.npy")
    if meta.get("cache_key") != key or not all(p.exists() for p in needed):
        return None
    return {"case_id": spec.case_id, "cache_key": key, "shape": meta["shape"], "spacing_mm": meta["spacing_mm"],
            "has_label": meta["has_label"], "class_voxels": meta.get("class_voxels", {})}


def preprocess_dataset(
    cases: Sequence[Any],
    out_dir: str | os.PathLike,
    plan: PreprocessingPlan,
    *,
    workers: int | None = None,
    progress: bool | None = None,
    locations_per_class: int = DEFAULT_LOCATIONS_PER_CLASS,
) -> Path:
    """Preprocess every case into ``out_dir`` (see the module docstring), skipping up-to-date cases.

    Args:
        cases: Discovery ``Case`` objects, ``(case_id, image, label)`` tuples (paths or Volumes) or
            phantom cases (see :func:`medseg.preprocessing.cases.as_case_spec`). Inputs are only read.
        out_dir: Cache folder (created).
        plan: The preprocessing plan.
        workers: Worker processes (``None``: all cores).
        progress: Show a progress bar (``None``: when stderr is a terminal).
        locations_per_class: Voxel indices sampled per class and stored for foreground patch sampling.

    Returns:
        ``out_dir`` as a Path; ``out_dir/dataset.json`` lists the plan and the cases.

    Raises:
        DataError: Unreadable inputs, label/image grid mismatch or duplicate case ids.
    """
    from medseg.utils.parallel import map_with_progress

    if not isinstance(plan, PreprocessingPlan):
        raise TypeError(f"plan must be a PreprocessingPlan, got {type(plan).__name__}")
    specs = [as_case_spec(c) for c in cases]
    ids = [s.case_id for s in specs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise DataError(f"duplicate case ids {duplicates}")
    if not specs:
        raise DataError("preprocess_dataset needs at least one case")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys = {s.case_id: _case_key(plan, s, locations_per_class) for s in specs}
    entries = {s.case_id: _cached_entry(out, s, keys[s.case_id]) for s in specs}
    todo = [s for s in specs if entries[s.case_id] is None]
    logger.info("preprocessing %d of %d cases into %s (%d cached)", len(todo), len(specs), out, len(specs) - len(todo))
    jobs = [(s, str(out), plan.to_dict(), keys[s.case_id], int(locations_per_class)) for s in todo]
    for entry in map_with_progress(_preprocess_case, jobs, workers=workers, desc="preprocess",
                                   disable=tqdm_disable(progress)):
        entries[entry["case_id"]] = entry
    index = {
        "format_version": CACHE_FORMAT_VERSION,
        "plan": plan.to_dict(),
        "cache_key": hashlib.sha256("".join(keys[i] for i in ids).encode()).hexdigest()[:24],
        "case_ids": ids,
        "cases": {i: entries[i] for i in ids},
    }
    atomic_write_json(out / "dataset.json", index)
    return out


def read_cache_index(cache_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``dataset.json`` of a preprocessed cache.

    Raises:
        DataError: No cache there, or it has an unsupported format version.
    """
    path = Path(cache_dir) / "dataset.json"
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError("no preprocessed data set here (dataset.json missing); run preprocessing first",
                        path=cache_dir) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"corrupt dataset.json: {exc}", path=path) from None
    if index.get("format_version") != CACHE_FORMAT_VERSION:
        raise DataError(f"cache format {index.get('format_version')} is not {CACHE_FORMAT_VERSION}; preprocess again",
                        path=path)
    return index


def load_preprocessed(cache_dir: str | os.PathLike, case_id: str, *, mmap: bool = True) -> PreprocessedCase:
    """Read one case from a preprocessed cache (memory-mapped, read-only, unless ``mmap=False``).

    Raises:
        DataError: The case is not in the cache.
    """
    cache = Path(cache_dir)
    meta_path = cache / f"{case_id}.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise DataError(f"case {case_id!r} is not in the preprocessed cache", path=cache) from None
    mode = "r" if mmap else None
    image = np.load(cache / f"{case_id}.image.npy", mmap_mode=mode)
    label = np.load(cache / f"{case_id}.label.npy", mmap_mode=mode) if meta.get("has_label") else None
    locations = {int(c): np.asarray(v, dtype=np.int64).reshape(-1, 3)
                 for c, v in meta.pop("class_locations", {}).items()}
    return PreprocessedCase(
        case_id=case_id,
        image=image,
        label=label,
        record=PreprocessRecord.from_dict(meta.pop("record")),
        spacing_mm=tuple(meta["spacing_mm"]),
        class_locations=locations,
        meta=meta,
    )
