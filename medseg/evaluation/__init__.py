"""Evaluation: overlap, surface, lesion-wise and volume metrics of liver/tumor segmentations, and reports.

Start here:

* :func:`binary_metrics` -- Dice, Jaccard, VOE, RVD, ASSD, MSSD, HD95, RMSD, NSD and volumes of one mask
  pair (2D or 3D), exact and fast (values equal MONAI's; ``docs/metrics.md`` has every formula);
* :func:`evaluate_case` -- per-region metrics, lesion detection and tumor burden of two label maps;
  :func:`to_dataframe` / :func:`summarize` turn case results into a table and cohort figures;
* :func:`measure_volumes` / :func:`volumes_report` -- liver, parenchyma, tumor and per-lesion volumes,
  diameters and centroids of one label map (the ``<case>_volumes.json`` contract);
* :func:`evaluate_folders` -- what ``medseg evaluate`` runs; ``protocol="lits2017"`` (:data:`PROTOCOLS`) scores
  as the LiTS 2017 challenge scorer did (:func:`evaluate_case_lits2017`, :func:`summarize_lits2017`);
* :func:`load_results` -- a ``medseg predict`` or ``medseg evaluate`` output folder as pandas tables.
"""

from medseg.utils.lazy import lazy_exports

_EXPORTS = {
    "BINARY_METRIC_KEYS": "binary",
    "binary_metrics": "binary",
    "CaseResult": "case",
    "EvaluationConfig": "case",
    "REGIONS": "case",
    "evaluate_case": "case",
    "lesions_dataframe": "cohort",
    "summarize": "cohort",
    "to_dataframe": "cohort",
    "confusion_matrix": "confusion",
    "confusion_metrics": "confusion",
    "pooled_matrix": "confusion",
    "average_precision": "detection",
    "cohort_detection": "detection",
    "froc_curve": "detection",
    "score_lesions": "detection",
    "axial_diameter_mm": "diameters",
    "max_diameter_mm": "diameters",
    "RecistAxes": "diameters",
    "recist_axes_mm": "diameters",
    "label_lesions": "lesions",
    "match_lesions": "lesions",
    "evaluate_case_lits2017": "lits2017",
    "summarize_lits2017": "lits2017",
    "overlap_from_counts": "overlap",
    "overlap_metrics": "overlap",
    "PROTOCOLS": "protocols",
    "Results": "results",
    "load_results": "results",
    "EvaluationRun": "runner",
    "EvaluateOptions": "runner",
    "evaluate_folders": "runner",
    "BootstrapSettings": "statistics",
    "bland_altman": "statistics",
    "compare_runs": "compare",
    "CompareSettings": "compare",
    "draw_bland_altman": "report",
    "bootstrap_mean_ci": "statistics",
    "describe": "statistics",
    "paired_comparison": "statistics",
    "surface_distances": "surface",
    "surface_metrics": "surface",
    "surface_voxels": "surface",
    "lesion_rows": "tables",
    "lesions_table": "tables",
    "volume_row": "tables",
    "volumes_table": "tables",
    "measure_volumes": "volumes",
    "volumes_report": "volumes",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
