"""Evaluation: overlap, surface, lesion-wise and volume metrics of liver/tumor segmentations, and reports.

Start here:

* :func:`binary_metrics` -- Dice, Jaccard, VOE, RVD, ASSD, MSSD, HD95, RMSD, NSD and volumes of one mask
  pair (2D or 3D), exact and fast (values equal MONAI's; ``docs/metrics.md`` has every formula);
* :func:`evaluate_case` -- per-region metrics, lesion detection and tumor burden of two label maps;
  :func:`to_dataframe` / :func:`summarize` turn case results into a table and cohort figures;
* :func:`measure_volumes` / :func:`volumes_report` -- liver, parenchyma, tumor and per-lesion volumes,
  diameters and centroids of one label map (the ``<case>_volumes.json`` contract);
* :func:`evaluate_folders` -- what ``medseg evaluate`` runs.
"""

from medseg.evaluation.binary import BINARY_METRIC_KEYS, binary_metrics
from medseg.evaluation.case import REGIONS, CaseResult, EvaluationConfig, evaluate_case
from medseg.evaluation.cohort import lesions_dataframe, summarize, to_dataframe
from medseg.evaluation.diameters import axial_diameter_mm, max_diameter_mm
from medseg.evaluation.lesions import label_lesions, match_lesions
from medseg.evaluation.overlap import overlap_from_counts, overlap_metrics
from medseg.evaluation.runner import EvaluationRun, evaluate_folders
from medseg.evaluation.surface import surface_distances, surface_metrics, surface_voxels
from medseg.evaluation.volumes import measure_volumes, volumes_report

__all__ = [
    "BINARY_METRIC_KEYS",
    "REGIONS",
    "CaseResult",
    "EvaluationConfig",
    "EvaluationRun",
    "axial_diameter_mm",
    "binary_metrics",
    "evaluate_case",
    "evaluate_folders",
    "label_lesions",
    "lesions_dataframe",
    "match_lesions",
    "max_diameter_mm",
    "measure_volumes",
    "overlap_from_counts",
    "overlap_metrics",
    "summarize",
    "surface_distances",
    "surface_metrics",
    "surface_voxels",
    "to_dataframe",
    "volumes_report",
]
