"""Predict a cohort: one label map per scan (and what a case writer adds), past bad inputs, sharded under
torchrun.

For each scan: read it (:func:`medseg.io.read_volume`: NIfTI file or DICOM series folder), predict, let
the :class:`CaseWriter` write its outputs (``medseg predict``'s is
:class:`medseg.outputs.case.PredictOutputs`: volumes JSON, DICOM SEG, probability maps, preview; inference
calls it through this protocol and never imports it) and then write ``<case>_seg.nii.gz`` (uint8, the
scan's shape and affine) unless the writer says no. Files are written atomically (temporary file +
rename), the label map last, so an existing output is replaced only by a complete new one and an
interrupted run leaves no truncated file; ``skip_existing`` resumes a cohort. Several processes may
predict into one folder: each writes a case's files while holding the folder's ``.medseg-predict.lock``
(:func:`medseg.utils.lock.folder_lock`), so they always come from one process.

A scan that fails (unreadable, not 3D, out of memory...) is recorded with a one-line reason and the
batch goes on; :class:`BatchSummary` lists what failed. Under ``torchrun`` each process takes every
``WORLD_SIZE``-th scan starting at its ``RANK`` (:func:`shard`), so no two processes write one file.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from medseg.data.naming import case_id_from_path, prediction_filename
from medseg.errors import DataError, MedsegError
from medseg.inference.checks import ScanChecks
from medseg.io.volume import Volume
from medseg.utils.lock import folder_lock
from medseg.utils.progress import tqdm_disable

__all__ = ["BatchOptions", "BatchSummary", "CaseOutcome", "CaseWriter", "ScanPredictor", "WrittenCase",
           "collect_inputs", "predict_batch", "shard_from_env"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseOutcome:
    """What happened to one input: ``status`` is ``"ok"``, ``"skipped"`` (output existed) or ``"failed"``."""

    case_id: str
    input: str
    status: str
    output: str | None = None
    reason: str | None = None
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)


@dataclass
class BatchSummary:
    """All outcomes of a batch, in input order."""

    outcomes: list[CaseOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[CaseOutcome]:
        """Outcomes with status ``"failed"``."""
        return [o for o in self.outcomes if o.status == "failed"]

    def counts(self) -> dict[str, int]:
        """Number of outcomes per status."""
        out = {"ok": 0, "skipped": 0, "failed": 0}
        for o in self.outcomes:
            out[o.status] += 1
        return out

    def format(self) -> str:
        """A short text summary: counts, then one line per failure."""
        c = self.counts()
        lines = [f"{c['ok']} predicted, {c['skipped']} skipped (output exists), {c['failed']} failed"]
        lines += [f"  FAILED {o.case_id} ({o.input}): {o.reason}" for o in self.failed]
        return "\n".join(lines)


def shard_from_env(environ: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` as set by ``torchrun`` (``(0, 1, 0)`` when not under it)."""
    env = os.environ if environ is None else environ
    try:
        return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
    except ValueError as exc:
        raise DataError(f"invalid RANK/WORLD_SIZE/LOCAL_RANK environment ({exc})") from None


def collect_inputs(paths: Iterable[str | os.PathLike]) -> tuple[list[tuple[str, Path]], list[CaseOutcome]]:
    """Scans to predict from files/folders, and a failure outcome for each path that holds none.

    Uses :func:`medseg.data.discovery.discover_images` path by path, so one bad path does not stop the
    others. Case ids used twice are failures too (their outputs would collide).
    """
    from medseg.data.discovery import discover_images

    found: list[tuple[str, Path]] = []
    failures: list[CaseOutcome] = []
    for path in paths:
        try:
            found.extend(discover_images([path]))
        except MedsegError as exc:
            failures.append(CaseOutcome(case_id_from_path(path), str(path), "failed", reason=str(exc)))
    first: dict[str, Path] = {}
    unique = []
    for cid, path in found:
        if cid in first:
            failures.append(CaseOutcome(cid, str(path), "failed",
                                        reason=f"case id {cid!r} already used by {first[cid]}"))
        else:
            first[cid] = path
            unique.append((cid, path))
    return unique, failures


class ScanPredictor(Protocol):
    """What :func:`predict_batch` predicts with (a :class:`~medseg.inference.Predictor`, or a stand-in)."""

    def predict(self, volume: Volume) -> tuple[Volume, dict[str, Any]]: ...


class WrittenCase(Protocol):
    """What a :class:`CaseWriter` wrote for one case: at least whether the NIfTI label map is still due."""

    write_label_map: bool


class CaseWriter(Protocol):
    """The per-case outputs beside the label map (``medseg predict``'s:
    :class:`medseg.outputs.case.PredictOutputs`)."""

    def write_case(self, case_id: str, source: Path, scan: Volume, labels: Volume, stats: dict[str, Any]
                   ) -> WrittenCase:
        """Write the case's outputs (called holding the folder's predict lock, before the label map)."""
        ...

    def case_done(self, outcome: CaseOutcome) -> None:
        """Every outcome (``ok``, ``skipped``, ``failed``), in order."""
        ...


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, MedsegError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@dataclass(frozen=True)
class BatchOptions:
    """How :func:`predict_batch` runs: one field per ``medseg predict`` batch option.

    Attributes:
        skip_existing: Leave cases whose label map already exists alone (resume a cohort).
        progress: Progress bar over scans (``None``: when stderr is a terminal).
        writer: The outputs per case besides the label map (a :class:`CaseWriter`, e.g.
            :func:`medseg.outputs.predict_outputs`'s): its ``write_case`` runs before the label map is
            written and returns what it wrote (``write_label_map`` false: no NIfTI); ``case_done(outcome)``
            gets every outcome. ``None``: the label maps alone.
        checks: Further :class:`~medseg.inference.checks.ScanChecks` (a :class:`~medseg.inference.Predictor`
            runs its own): refuses unusable scans before prediction and adds its findings to
            ``stats["warnings"]`` (errors when strict).
        series_uid: The series to read from DICOM folders holding several.
    """

    skip_existing: bool = False
    progress: bool | None = None
    writer: CaseWriter | None = None
    checks: ScanChecks | None = None
    series_uid: str | None = None


def predict_batch(
    predictor: ScanPredictor,
    inputs: Sequence[tuple[str, str | os.PathLike]],
    out_dir: str | os.PathLike,
    options: BatchOptions | None = None,
    **fields,
) -> BatchSummary:
    """Predict every ``(case_id, path)`` in ``inputs`` into ``out_dir``.

    Args:
        predictor: A :class:`~medseg.inference.Predictor` (anything with ``predict(volume) -> (Volume,
            stats)``).
        inputs: Scans as ``(case_id, path)`` (see :func:`collect_inputs`).
        out_dir: Output folder (created).
        options: A :class:`BatchOptions`; its fields may also be given as keywords (``skip_existing=True``),
            which replace those of ``options``.

    Returns:
        The :class:`BatchSummary`; failures are recorded, never raised (except KeyboardInterrupt).

    Raises:
        TypeError: A keyword that is not a field of :class:`BatchOptions`.
    """
    from medseg.io import read_volume, write_volume

    o = replace(options or BatchOptions(), **fields)
    skip_existing, writer, checks = o.skip_existing, o.writer, o.checks
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = BatchSummary()
    bar = tqdm(inputs, desc="predict", unit="scan", disable=tqdm_disable(o.progress))
    for case_id, path in bar:
        target = out_dir / prediction_filename(case_id)
        if skip_existing and target.exists():
            summary.outcomes.append(CaseOutcome(case_id, str(path), "skipped", output=str(target)))
            _notify(writer, summary.outcomes[-1])
            continue
        t0 = time.perf_counter()
        try:
            volume = read_volume(path, series_uid=o.series_uid)
            timings = {"read": time.perf_counter() - t0}
            findings = checks.before(volume, path) if checks is not None else []
            labels, stats = predictor.predict(volume)  # a Predictor runs its own scan checks (settings)
            if checks is not None:
                findings += checks.after(volume, labels, path)
            stats = {**stats, "warnings": [*stats.get("warnings", ()), *findings]}
            for finding in stats["warnings"]:
                logger.warning("%s: %s", case_id, finding)
            timings["predict"] = time.perf_counter() - t0 - timings["read"]
            with folder_lock(out_dir, "predict", wait=True):  # this case's files come from one process
                extra = writer.write_case(case_id, Path(path), volume, labels, stats) if writer else None
                if extra is None or extra.write_label_map:
                    write_volume(labels, target, label=True)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # keep going: one line per failure, the traceback only in debug logs
            logger.debug("prediction of %s failed", path, exc_info=True)
            reason = _one_line(exc)
            logger.error("%s: %s", case_id, reason)
            summary.outcomes.append(CaseOutcome(case_id, str(path), "failed", reason=reason,
                                                seconds=time.perf_counter() - t0))
            _notify(writer, summary.outcomes[-1])
            continue
        seconds = time.perf_counter() - t0
        logger.info("%s: %s (%.1f s)", case_id, target, seconds)
        written = extra is None or extra.write_label_map
        summary.outcomes.append(CaseOutcome(case_id, str(path), "ok", output=str(target) if written else None,
                                            seconds=seconds, stats=stats, timings_s=timings))
        _notify(writer, summary.outcomes[-1])
    return summary


def _notify(writer: CaseWriter | None, outcome: CaseOutcome) -> None:
    if writer is not None:
        writer.case_done(outcome)
