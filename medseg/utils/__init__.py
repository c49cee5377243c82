"""Small shared helpers: atomic file writes and parallel maps with a progress bar."""

from medseg.utils.atomic import atomic_path, atomic_write_json, atomic_write_text
from medseg.utils.parallel import map_with_progress

__all__ = ["atomic_path", "atomic_write_json", "atomic_write_text", "map_with_progress"]
