"""What ``medseg predict`` writes per case besides the label map, and per run: the clinical outputs.

Per case (in the output folder): ``<case>_volumes.json`` (:func:`medseg.evaluation.volumes.volumes_report`
plus ``warnings``), ``<case>_seg.dcm`` (DICOM SEG, :mod:`medseg.io.dicom_seg_writer`) and
``<case>_preview.png`` (:mod:`medseg.preview`), with ``--save-probabilities`` the uint8 maps
``<case>_prob_liver.nii.gz``, ``<case>_prob_tumor.nii.gz`` and ``<case>_uncertainty.nii.gz``
(:mod:`medseg.inference.probability_maps`). A fold ensemble's agreement (``stats["uncertainty"]``) goes
into the volumes JSON (``uncertainty``) and the cohort table. Per run: ``run.json`` (:mod:`medseg.manifest`),
``volumes.csv`` and ``lesions.csv`` (:mod:`medseg.evaluation.tables`), rewritten atomically after every case.
Under ``torchrun`` each process writes its own ``run.rank<R>.json``, ``volumes.rank<R>.csv`` and
``lesions.rank<R>.csv`` (rank 0 the plain names), so no two processes write one file.

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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.errors import DataError, MedsegError
from medseg.io.volume import Volume
from medseg.manifest import RunManifest
from medseg.utils.atomic import atomic_write_json

__all__ = ["FORMATS", "CaseFiles", "OutputSettings", "PredictOutputs", "map_filename", "seg_filename", "wants_seg"]

logger = logging.getLogger(__name__)

FORMATS = ("auto", "nifti", "dicom-seg", "both")


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
        format: One of :data:`FORMATS`.
        preview: Write ``<case>_preview.png``.
        volumes: Write ``<case>_volumes.json`` and the cohort tables.
        seg: :class:`~medseg.io.dicom_seg_writer.SegSettings` for the DICOM SEG (``None``: defaults).
        rank: This process's rank (file names of the per-run outputs).
        model: What every output says about the model (``name``, ``sha256``, ``training_data`` records,
            ``phantom_only``): written into ``<case>_volumes.json`` and the preview caption.
    """

    format: str = "auto"
    preview: bool = True
    volumes: bool = True
    seg: Any = None
    rank: int = 0
    model: dict | None = None

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
    _volume_rows: dict[str, dict] = field(default_factory=dict)
    _lesion_rows: dict[str, list[dict]] = field(default_factory=dict)
    _pending: dict[str, CaseFiles] = field(default_factory=dict)

    def write_case(self, case_id: str, source: Path, scan: Volume, labels: Volume, stats: dict) -> CaseFiles:
        """Write the volumes JSON, DICOM SEG and preview of one case; never raises for a failed step."""
        out = CaseFiles(warnings=[str(w) for w in stats.get("warnings", ())])
        out.uids = _dicom_uids(source, scan) if scan.meta.get("format") == "dicom" else {}
        report = self._step(out, "volumes", lambda: _volumes(scan, labels)) if self.settings.volumes else None
        maps = stats.pop("probability_maps", None)  # uint8 maps: written here, not kept with the outcome
        if maps:
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
            atomic_write_json(self.out_dir / f"{case_id}_volumes.json",
                              {"case_id": case_id, "input": str(source), **report, "warnings": out.warnings, **model})
            out.files.insert(0, str(self.out_dir / f"{case_id}_volumes.json"))
            self._add_rows(case_id, report, out.warnings)
        self._pending[case_id] = out
        return out

    def case_done(self, outcome) -> None:
        """Record ``outcome`` (a :class:`~medseg.inference.batch.CaseOutcome`) in the manifest and tables."""
        extra = self._pending.pop(outcome.case_id, CaseFiles())
        if outcome.status == "skipped" and self.settings.volumes:
            self._rows_from_earlier_run(outcome.case_id)
        if outcome.status in ("ok", "skipped") and self.settings.volumes:
            self._write_tables()
        if self.manifest is None:
            return
        files = list(extra.files) + ([outcome.output] if outcome.output and extra.write_label_map else [])
        entry = {"case_id": outcome.case_id, "input": outcome.input, "status": outcome.status, **extra.uids,
                 "seconds": round(outcome.seconds, 3),
                 "timings_s": {k: round(v, 3) for k, v in {**outcome.timings_s, **extra.timings_s}.items()},
                 "warnings": extra.warnings, "outputs": files}
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
        from medseg.preview import preview_caption, preview_filename, write_preview

        caption = preview_caption(case_id, report, out.warnings)
        if self.settings.model and self.settings.model.get("trained_on"):
            caption += f"\nmodel {self.settings.model.get('name', '')} trained on {self.settings.model['trained_on']}"
        path = write_preview(scan, labels, self.out_dir / preview_filename(case_id), caption=caption)
        out.files.append(str(path))
        return path

    def _add_rows(self, case_id: str, report: dict, warnings: list[str]) -> None:
        from medseg.evaluation.tables import lesion_rows, volume_row

        self._volume_rows[case_id] = volume_row(case_id, report, warnings)
        self._lesion_rows[case_id] = lesion_rows(case_id, report["lesions"])

    def _rows_from_earlier_run(self, case_id: str) -> None:
        """A resumed (skipped) case keeps its rows in the tables, from its earlier ``<case>_volumes.json``."""
        import json

        path = self.out_dir / f"{case_id}_volumes.json"
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            self._add_rows(case_id, report, report.get("warnings", []))
        except (OSError, ValueError, KeyError, TypeError):
            logger.warning("%s: no usable volumes JSON from the earlier run; not in the tables", case_id)

    def _write_tables(self) -> None:
        from medseg.evaluation.tables import lesions_table, volumes_table, write_table

        write_table(volumes_table(self._volume_rows.values()), self.out_dir / self.settings.run_file("volumes", ".csv"))
        lesions = [row for rows in self._lesion_rows.values() for row in rows]
        write_table(lesions_table(lesions), self.out_dir / self.settings.run_file("lesions", ".csv"))


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
