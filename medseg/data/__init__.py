"""Data sets: the synthetic LiTS-like phantom, data-set discovery and integrity checks."""

from medseg.utils.lazy import lazy_exports

_EXPORTS = {
    "CheckReport": "check",
    "Problem": "check",
    "SpacingLimits": "check",
    "check_case": "check",
    "check_dataset": "check",
    "Case": "discovery",
    "DatasetScan": "discovery",
    "discover_dataset": "discovery",
    "discover_images": "discovery",
    "scan_dataset": "discovery",
    "PHANTOM_SIZES": "phantom",
    "PhantomCase": "phantom",
    "make_phantom": "phantom",
    "phantom_case_ids": "phantom",
    "write_phantom_case": "phantom",
    "write_phantom_dataset": "phantom",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
