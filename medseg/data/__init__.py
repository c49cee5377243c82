"""Data sets: the synthetic LiTS-like phantom, data-set discovery and integrity checks, partial annotations
(sparse schemes and lesion boxes, issue #30)."""

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
    "PHANTOM_SIZES": "phantom",
    "PhantomCase": "phantom",
    "make_phantom": "phantom",
    "phantom_case_ids": "phantom",
    "write_phantom_case": "phantom",
    "write_phantom_dataset": "phantom",
    "LesionBox": "boxes",
    "box_labels": "boxes",
    "boxes_from_labels": "boxes",
    "read_boxes_csv": "boxes",
    "SparsifySettings": "sparse_dataset",
    "write_sparse_dataset": "sparse_dataset",
    "annotated_fraction": "sparsify",
    "sparsify_labels": "sparsify",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
