"""Data sets: the synthetic LiTS-like phantom, data-set discovery and integrity checks."""

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
    "PhantomCase",
    "make_phantom",
    "phantom_case_ids",
    "write_phantom_case",
    "write_phantom_dataset",
]
