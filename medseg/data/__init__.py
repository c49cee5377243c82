"""Data sets: the synthetic LiTS-like phantom, data-set discovery and integrity checks."""

from medseg.data.check import CheckReport, Problem, SpacingLimits, check_case, check_dataset
from medseg.data.discovery import Case, DatasetScan, discover_dataset, discover_images, scan_dataset
from medseg.data.phantom import (
    PHANTOM_SIZES,
    PhantomCase,
    make_phantom,
    phantom_case_ids,
    write_phantom_case,
    write_phantom_dataset,
)

__all__ = [
    "PHANTOM_SIZES",
    "Case",
    "CheckReport",
    "DatasetScan",
    "PhantomCase",
    "Problem",
    "SpacingLimits",
    "check_case",
    "check_dataset",
    "discover_dataset",
    "discover_images",
    "make_phantom",
    "phantom_case_ids",
    "scan_dataset",
    "write_phantom_case",
    "write_phantom_dataset",
]
