"""Preprocessing: fingerprint and plan, reorient + normalise + resample, the invertible record, the cache."""

from medseg.preprocessing.cases import CaseSpec, as_case_spec
from medseg.preprocessing.dataset import (
    PreprocessedCase,
    load_preprocessed,
    preprocess_dataset,
    read_cache_index,
)
from medseg.preprocessing.intensity import normalize_intensity
from medseg.preprocessing.plan import (
    DEFAULT_WINDOW_HU,
    NORMALIZATIONS,
    PreprocessingPlan,
    compute_fingerprint,
    plan_from_fingerprint,
)
from medseg.preprocessing.resample import grid_affine, resample_array, resampled_shape
from medseg.preprocessing.transform import (
    PreprocessRecord,
    preprocess_image,
    preprocess_label,
    restore_labels,
    restore_to_scan,
)

__all__ = [
    "DEFAULT_WINDOW_HU",
    "NORMALIZATIONS",
    "CaseSpec",
    "PreprocessRecord",
    "PreprocessedCase",
    "PreprocessingPlan",
    "as_case_spec",
    "compute_fingerprint",
    "grid_affine",
    "load_preprocessed",
    "normalize_intensity",
    "plan_from_fingerprint",
    "preprocess_dataset",
    "preprocess_image",
    "preprocess_label",
    "read_cache_index",
    "resample_array",
    "resampled_shape",
    "restore_labels",
    "restore_to_scan",
]
