"""Small shared helpers: atomic file writes, output-path rules, folder locks, parallel maps with progress."""

from medseg.utils.atomic import (
    atomic_dir,
    atomic_path,
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temps,
)
from medseg.utils.parallel import map_with_progress

__all__ = ["atomic_dir", "atomic_path", "atomic_write_bytes", "atomic_write_csv", "atomic_write_json",
           "atomic_write_text", "map_with_progress", "remove_stale_temps"]
