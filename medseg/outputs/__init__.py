"""What ``medseg predict`` writes, per case and per run: the outputs stage.

- :mod:`medseg.outputs.case`: the per-case writer (:class:`PredictOutputs` with :class:`OutputSettings`:
  volumes JSON, DICOM SEG, probability maps, preview) and the cohort tables of a folder;
- :mod:`medseg.outputs.preview`: the QA picture ``<case>_preview.png`` (its file, caption and atomic
  write; the figure is :func:`medseg.viz.preview_figure`);
- :mod:`medseg.outputs.manifest`: ``run.json``, what made an output folder;
- :mod:`medseg.outputs.run`: :func:`predict_outputs`, the writer and ``run.json`` of a prediction run as
  ``medseg predict`` starts them, for API users too.

It uses ``io``, ``evaluation`` and ``viz``; inference never imports it (see ``docs/architecture.md``).
Names are imported on first use.
"""

from medseg.utils.lazy import lazy_exports

_EXPORTS = {
    "FAILURES_FILE": "case",
    "FORMATS": "case",
    "PARTS_FILE": "case",
    "CaseFiles": "case",
    "OutputSettings": "case",
    "PredictOutputs": "case",
    "map_filename": "case",
    "rebuild_cohort_tables": "case",
    "record_part": "case",
    "seg_filename": "case",
    "volumes_filename": "case",
    "wants_seg": "case",
    "MANIFEST_NAME": "manifest",
    "ManifestInfo": "manifest",
    "RunManifest": "manifest",
    "file_sha256": "manifest",
    "library_versions": "manifest",
    "preview_caption": "preview",
    "preview_filename": "preview",
    "write_preview": "preview",
    "compute_report": "run",
    "model_record": "run",
    "models_sha256": "run",
    "predict_outputs": "run",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
