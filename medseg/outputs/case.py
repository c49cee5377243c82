"""What ``medseg predict`` writes per case besides the label map, and per run: the clinical outputs.

Per case (in the output folder): ``<case>_volumes.json`` (:func:`medseg.evaluation.volumes.volumes_report`
plus ``warnings``), ``<case>_seg.dcm`` (DICOM SEG, :mod:`medseg.io.dicom_seg_writer`) and
``<case>_preview.png`` (:mod:`medseg.outputs.preview`), with ``--save-probabilities`` the uint8 maps
``<case>_prob_liver.nii.gz``, ``<case>_prob_tumor.nii.gz`` and ``<case>_uncertainty.nii.gz``
(:mod:`medseg.inference.probability_maps`). A fold ensemble's agreement (``stats["uncertainty"]``) goes
into the volumes JSON (``uncertainty``) and the cohort table. Per run: ``run.json`` (:mod:`medseg.outputs.manifest`;
under ``torchrun`` each process writes its own ``run.rank<R>.json``, rank 0 the plain name). Per folder:
``volumes.csv`` and ``lesions.csv`` (:mod:`medseg.evaluation.tables`). The per-case files are the source of
truth: after every case the two tables are rebuilt from every ``<case>_volumes.json`` in the folder while
holding the folder's predict lock (:func:`rebuild_cohort_tables`), so several ``predict`` processes (runs,
``torchrun`` ranks, array jobs) writing into one folder end with tables holding all their cases.

Output formats (``--format``): ``auto`` = NIfTI for NIfTI input, NIfTI and DICOM SEG for DICOM input;
``nifti``; ``dicom-seg`` (no NIfTI); ``both``. A failed output step never fails the case: it becomes a
warning, and when the DICOM SEG could not be written the NIfTI label map is written in any case, so every
predicted case leaves a label map. An empty prediction gets no SEG (a warning says so).

:class:`PredictOutputs` is the ``writer`` of :func:`medseg.inference.batch.predict_batch`: the batch
calls :meth:`PredictOutputs.write_case` before writing the label map and :meth:`PredictOutputs.case_done`
with each outcome.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.errors import DataError, MedsegError
from medseg.io.volume import Volume
from medseg.outputs.manifest import RunManifest
from medseg.utils.atomic import atomic_write_json

__all__ = ["FAILURES_FILE", "FORMATS", "PARTS_FILE", "CaseFiles", "OutputSettings", "PredictOutputs", "map_filename",
           "rebuild_cohort_tables", "record_part", "seg_filename", "volumes_filename", "wants_seg"]

logger = logging.getLogger(__name__)

FORMATS = ("auto", "nifti", "dicom-seg", "both")


def volumes_filename(case_id: str) -> str:
    """Name of the volumes JSON written next to ``<case>_seg.nii.gz``."""
    return f"{case_id}_volumes.json"


def seg_filename(case_id: str) -> str:
    """File name of the DICOM SEG written next to ``<case>_seg.nii.gz``."""
    return f"{case_id}_seg.dcm"


def map_filename(case_id: str, name: str) -> str:
    """File name of a probability map (``liver``, ``tumor``) or of the ``uncertainty`` map of a case."""
    return f"{case_id}_uncertainty.nii.gz" if name == "uncertainty" else f"{case_id}_prob_{name}.nii.gz"


def wants_seg(fmt: str, source_is_dicom: bool) -> bool:
    """Whether format ``fmt`` asks for a DICOM SEG for this input."""
    return fmt in ("dicom-seg", "both") or (fmt == "auto" and source_is_dicom)


@dataclass(frozen=True)
class OutputSettings:
    """What to write per case.

    Attributes:
        format: One of :data:`FORMATS`: the label map as NIfTI (``<case>_seg.nii.gz``), as DICOM SEG
            (``<case>_seg.dcm``) or both.
        preview: Write ``<case>_preview.png``.
        volumes: Write ``<case>_volumes.json`` and the cohort tables.
        probabilities: Write the probability maps the predictor returned (``stats["probability_maps"]``,
            :attr:`medseg.inference.InferenceSettings.probabilities`).
        seg: :class:`~medseg.io.dicom_seg_writer.SegSettings` for the DICOM SEG (``None``: defaults).
        rank: This process's rank (file names of the per-run outputs).
        part: This process's part of the cohort (``"K/N"``; empty: the whole cohort), recorded per case.
        model: What every output says about the model (``name``, ``sha256``, ``training_data`` records,
            ``phantom_only``): written into ``<case>_volumes.json`` and the preview caption.
    """

    format: str = "auto"
    preview: bool = True
    volumes: bool = True
    probabilities: bool = True
    seg: Any = None
    rank: int = 0
    model: dict | None = None
    part: str = ""

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {list(FORMATS)}, got {self.format!r}")

    def run_file(self, stem: str, suffix: str) -> str:
        """``stem + suffix`` for rank 0, ``stem.rank<R> + suffix`` otherwise."""
        return f"{stem}{suffix}" if self.rank == 0 else f"{stem}.rank{self.rank}{suffix}"


@dataclass
class CaseFiles:
    """What :meth:`PredictOutputs.write_case` wrote: files, warnings, step times, whether a NIfTI is due."""

    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    write_label_map: bool = True
    uids: dict[str, str] = field(default_factory=dict)


@dataclass
class PredictOutputs:
    """Writes the per-case and per-run outputs of a prediction run into ``out_dir``."""

    out_dir: Path
    settings: OutputSettings
    manifest: RunManifest | None = None
    _reports: dict[str, tuple] = field(default_factory=dict)  # parsed case JSONs (rebuild_cohort_tables' cache)
    _pending: dict[str, CaseFiles] = field(default_factory=dict)

    def write_case(self, case_id: str, source: Path, scan: Volume, labels: Volume, stats: dict) -> CaseFiles:
        """Write the volumes JSON, DICOM SEG and preview of one case; never raises for a failed step."""
        out = CaseFiles(warnings=[str(w) for w in stats.get("warnings", ())])
        out.uids = _dicom_uids(source, scan) if scan.meta.get("format") == "dicom" else {}
        report = self._step(out, "volumes", lambda: _volumes(scan, labels)) if self.settings.volumes else None
        maps = stats.pop("probability_maps", None)  # uint8 maps: written here, not kept with the outcome
        if maps and self.settings.probabilities:
            self._step(out, "probabilities", lambda: self._maps(case_id, scan, maps, out))
        if report is not None and stats.get("uncertainty"):
            report = {**report, "uncertainty": _rounded_uncertainty(stats["uncertainty"])}
        is_dicom = scan.meta.get("format") == "dicom"
        if wants_seg(self.settings.format, is_dicom):
            # the scan's meta (series UID, format) with the predicted labels, on the scan's grid
            written = self._step(out, "dicom_seg", lambda: self._seg(case_id, source, scan.with_array(labels.array),
                                                                     out))
            out.write_label_map = self.settings.format != "dicom-seg" or written is None
            if written is None and self.settings.format == "dicom-seg":
                out.warnings.append("no DICOM SEG: the NIfTI label map was written instead")
        else:
            out.write_label_map = True
        if self.settings.preview:
            self._step(out, "preview", lambda: self._preview(case_id, scan, labels, report, out))
        if report is not None:  # the JSON last, with every warning of the case
            model = {"model": self.settings.model} if self.settings.model else {}
            atomic_write_json(self.out_dir / volumes_filename(case_id),
                              {"case_id": case_id, "input": str(source), **report, "warnings": out.warnings, **model})
            out.files.insert(0, str(self.out_dir / volumes_filename(case_id)))
        self._pending[case_id] = out
        return out

    def case_done(self, outcome) -> None:
        """Record ``outcome`` (a :class:`~medseg.inference.batch.CaseOutcome`) in the manifest and tables."""
        extra = self._pending.pop(outcome.case_id, CaseFiles())
        if outcome.status in ("ok", "skipped") and self.settings.volumes:
            rebuild_cohort_tables(self.out_dir, cache=self._reports)
        if self.manifest is None:
            return
        files = list(extra.files) + ([outcome.output] if outcome.output and extra.write_label_map else [])
        entry = {"case_id": outcome.case_id, "input": outcome.input, "status": outcome.status, **extra.uids,
                 "seconds": round(outcome.seconds, 3),
                 "timings_s": {k: round(v, 3) for k, v in {**outcome.timings_s, **extra.timings_s}.items()},
                 "warnings": extra.warnings, "outputs": files}
        if self.settings.part:
            entry["part"] = self.settings.part
        if outcome.reason:
            entry["reason"] = outcome.reason
        self.manifest.add_case(entry)

    # -- steps -----------------------------------------------------------------------------------
    def _step(self, out: CaseFiles, name: str, work):
        t0 = time.perf_counter()
        try:
            return work()
        except MedsegError as exc:
            out.warnings.append(f"{name}: {exc}")
        except Exception as exc:  # an output step never fails the case; the traceback goes to the debug log
            logger.debug("%s failed", name, exc_info=True)
            text = str(exc).strip().splitlines()
            out.warnings.append(f"{name} failed: {type(exc).__name__}: {text[0][:200] if text else ''}")
        finally:
            out.timings_s[name] = time.perf_counter() - t0
        return None

    def _seg(self, case_id: str, source: Path, labels: Volume, out: CaseFiles):
        from medseg.io.dicom_seg_writer import EmptySegmentationError, write_dicom_seg

        if labels.meta.get("format") != "dicom":
            raise DataError("not a DICOM input: no source series for a DICOM SEG", path=source)
        try:
            result = write_dicom_seg(labels, source, self.out_dir / seg_filename(case_id), settings=self.settings.seg)
        except EmptySegmentationError:
            out.warnings.append("nothing segmented: no DICOM SEG written")
            return None
        out.warnings.extend(f"dicom_seg: {w}" for w in result.warnings)
        out.files.append(str(result.path))
        return result

    def _maps(self, case_id: str, scan: Volume, maps: dict, out: CaseFiles) -> None:
        from medseg.inference.probability_maps import PROBABILITY_SCALE
        from medseg.io.nifti import write_nifti

        for name, array in maps.items():
            path = self.out_dir / map_filename(case_id, name)
            write_nifti(scan.with_array(array, kind="probabilities"), path, scale=PROBABILITY_SCALE)
            out.files.append(str(path))

    def _preview(self, case_id: str, scan: Volume, labels: Volume, report, out: CaseFiles) -> Path:
        from medseg.outputs.preview import preview_caption, preview_filename, write_preview

        caption = preview_caption(case_id, report, out.warnings)
        if self.settings.model and self.settings.model.get("trained_on"):
            caption += f"\nmodel {self.settings.model.get('name', '')} trained on {self.settings.model['trained_on']}"
        path = write_preview(scan, labels, self.out_dir / preview_filename(case_id), caption=caption)
        out.files.append(str(path))
        return path


def rebuild_cohort_tables(out_dir: str | os.PathLike, *, cache: dict | None = None) -> tuple[Path, Path]:
    """Rewrite ``volumes.csv`` and ``lesions.csv`` of ``out_dir`` from every ``<case>_volumes.json`` in it.

    The per-case files are the source of truth; the tables are derived, rebuilt while holding the folder's
    ``.medseg-predict.lock`` (waiting for it), so processes that predict into one folder never drop each
    other's rows: the last rebuild sees every case written so far. Cases in case-id order; a JSON that is
    not a readable volumes report (a symbolic link, unparsable) is left out with a warning.

    Args:
        out_dir: A ``medseg predict`` output folder.
        cache: Optional dict kept between calls: a file whose size and modification time are unchanged
            is not parsed again (a cohort of N cases costs N reads in all, not N per case).

    Returns:
        The paths of ``volumes.csv`` and ``lesions.csv``.
    """
    from medseg.evaluation.tables import lesion_rows, lesions_table, volume_row, volumes_table, write_table
    from medseg.utils.lock import folder_lock

    folder = Path(out_dir)
    cache = {} if cache is None else cache
    with folder_lock(folder, "predict", wait=True):
        reports = []
        for path in sorted(folder.glob(f"*{_VOLUMES_SUFFIX}")):
            report = _case_report(path, cache)
            if report is not None:
                reports.append((str(report.get("case_id") or path.name[: -len(_VOLUMES_SUFFIX)]), report))
        reports.sort(key=lambda item: item[0])
        volumes = volumes_table(volume_row(case, r, r.get("warnings") or []) for case, r in reports)
        lesions = lesions_table([row for case, r in reports for row in lesion_rows(case, r.get("lesions") or [])])
        return write_table(volumes, folder / "volumes.csv"), write_table(lesions, folder / "lesions.csv")


_VOLUMES_SUFFIX = "_volumes.json"


def _case_report(path: Path, cache: dict) -> dict | None:
    """The parsed ``<case>_volumes.json`` at ``path`` (from ``cache`` when unchanged), ``None`` if unusable."""
    import json
    import stat

    try:
        st = path.lstat()
        if path.name.startswith(".") or not stat.S_ISREG(st.st_mode):
            return None
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        if cache.get(path.name, (None,))[0] != key:
            report = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(report, dict) or not isinstance(report.get("lesions", []), list):
                raise ValueError("not a volumes report")
            cache[path.name] = (key, report)
        return cache[path.name][1]
    except (OSError, ValueError) as exc:
        logger.warning("%s: not used for the cohort tables (%s)", path, exc)
        return None


def _rounded_uncertainty(agreement: dict) -> dict:
    """The folds' agreement (:meth:`medseg.inference.ensemble.FoldMean.agreement`) rounded for the JSON."""
    def rnd(v):
        return [round(x, 3) for x in v] if isinstance(v, list) else (round(v, 4) if isinstance(v, float) else v)

    return {k: rnd(v) for k, v in agreement.items()}


def _volumes(scan: Volume, labels: Volume) -> dict:
    from medseg.evaluation.volumes import volumes_report

    return volumes_report(labels, scan)


def _dicom_uids(source: Path, scan: Volume) -> dict[str, str]:
    """StudyInstanceUID and SeriesInstanceUID of a DICOM input, from the first header of its series."""
    import pydicom

    from medseg.io.dicom import is_dicom_file

    wanted = str(scan.meta.get("series_uid", "") or "")
    paths = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for path in paths:
        if not is_dicom_file(path):
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # the UIDs are informative only; the reader has named any bad file already
            continue
        if "Rows" in ds and str(ds.get("SeriesInstanceUID", "") or "") == wanted:
            return {"study_uid": str(ds.get("StudyInstanceUID", "")), "series_uid": wanted}
    return {}


#: The parts of a cohort that have finished (``record_part``), and the failed cases once all have.
PARTS_FILE, FAILURES_FILE = "parts.json", "failures.csv"


def record_part(out_dir: str | os.PathLike, part: Mapping[str, Any], outcomes: Sequence[Any]) -> dict | None:
    """Record that ``part`` (``{"index", "count", "source"}``) of a cohort finished with ``outcomes``
    (:class:`~medseg.inference.batch.CaseOutcome`); when every part of the cohort has, write the failed cases
    with their one-line reasons to ``failures.csv`` and return the cohort's counts.

    ``parts.json`` holds one entry per finished part (a re-run part replaces its entry; a split into another
    number of parts starts anew), read and rewritten under the folder's predict lock, so parts ending at
    the same time never lose each other's entry.

    Returns:
        ``{"parts", "ok", "skipped", "failed", "failures"}`` when the last part ends, else ``None``.
    """
    import json

    from medseg.evaluation.tables import write_table
    from medseg.utils.lock import folder_lock

    folder = Path(out_dir)
    entry = {"source": part.get("source"), "ok": 0, "skipped": 0, "failed": 0, "failures": []}
    for outcome in outcomes:
        entry[outcome.status] += 1
        if outcome.status == "failed":
            entry["failures"].append({"case": outcome.case_id, "input": outcome.input, "reason": outcome.reason})
    with folder_lock(folder, "predict", wait=True):
        try:
            record = json.loads((folder / PARTS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = {}
        if not isinstance(record, dict) or record.get("count") != part["count"]:
            record = {"count": part["count"], "done": {}}
        record["done"][str(part["index"])] = entry
        atomic_write_json(folder / PARTS_FILE, record)
        if len(record["done"]) < part["count"]:
            return None
        entries = [record["done"][k] for k in sorted(record["done"], key=int)]
        failures = [{**f, "part": f"{k}/{part['count']}"} for k in sorted(record["done"], key=int)
                    for f in record["done"][k]["failures"]]  # fmt: skip
        import pandas as pd

        write_table(pd.DataFrame(failures, columns=["case", "input", "part", "reason"]), folder / FAILURES_FILE)
    return {"parts": part["count"], **{k: sum(e[k] for e in entries) for k in ("ok", "skipped", "failed")},
            "failures": failures}
