"""Lesion bounding boxes as weak tumor labels (issue #30): RECIST-style boxes become training labels.

A radiologist measuring a lesion (RECIST, Eisenhauer et al., Eur J Cancer 2009) marks its extent, not its
voxels. Inside an annotated liver, a box says: the lesion lies in here, and not outside. The training
label made from it (:func:`box_labels`) is

- outside every box: the dense liver annotation (1 liver, 0 background): no tumor there;
- the *core* of each box (the ellipsoid inscribed in the box, shrunk by ``core``, inside the liver): tumor
  (2), since a lesion fills the middle of its tight box;
- the rest of the box inside the liver: ``ignore_label`` (uncertain: lesion or parenchyma), left out of
  every loss (:mod:`medseg.losses`, ``ignore_index``);
- box voxels outside the liver stay background (tumors lie inside the liver mask).

Boxes are read from a CSV (:func:`read_boxes_csv`) with columns ``case, x_min, y_min, z_min, x_max, y_max,
z_max[, class]`` in world millimetres of the image's affine (NIfTI RAS+); ``class`` is ``tumor`` or ``2``
(the default). :func:`boxes_from_labels` makes the tight box of every lesion of a dense map, to plan an
annotation budget as :mod:`medseg.data.sparsify` does for slices and scribbles.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.errors import DataError
from medseg.labels import LIVER, TUMOR

__all__ = ["BOX_COLUMNS", "LesionBox", "box_labels", "boxes_from_labels", "read_boxes_csv", "write_boxes_csv"]

BOX_COLUMNS = ("case", "x_min", "y_min", "z_min", "x_max", "y_max", "z_max", "class")


@dataclass(frozen=True)
class LesionBox:
    """An axis-aligned box in world coordinates (mm): ``low`` and ``high`` corners, and its class (2, tumor)."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]
    label: int = TUMOR


def _voxel_centres_world(shape: Sequence[int], affine: np.ndarray, window: tuple[slice, ...]) -> np.ndarray:
    """World coordinates ``(..., 3)`` of the voxel centres in ``window``."""
    grids = np.meshgrid(*[np.arange(s.start, s.stop) for s in window], indexing="ij")
    voxels = np.stack([*grids, np.ones_like(grids[0])], axis=-1).astype(float)
    return (voxels @ np.asarray(affine, dtype=float).T)[..., :3]


def _window(box: LesionBox, shape: Sequence[int], affine: np.ndarray) -> tuple[slice, ...] | None:
    """The voxel window holding every voxel centre that may lie in ``box`` (its 8 corners mapped back)."""
    corners = np.array([[x, y, z, 1.0] for x in (box.low[0], box.high[0]) for y in (box.low[1], box.high[1])
                        for z in (box.low[2], box.high[2])])  # fmt: skip
    voxels = (corners @ np.linalg.inv(np.asarray(affine, dtype=float)).T)[:, :3]
    lo = np.maximum(np.floor(voxels.min(0)).astype(int), 0)
    hi = np.minimum(np.ceil(voxels.max(0)).astype(int) + 1, shape)
    return None if np.any(hi <= lo) else tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def box_labels(labels: np.ndarray, boxes: Sequence[LesionBox], affine: np.ndarray, *, ignore_label: int,
               core: float = 0.5) -> np.ndarray:
    """Weak training labels from a dense liver annotation and lesion boxes (see the module docstring).

    Args:
        labels: Dense label map ``(X, Y, Z)``; its liver is every voxel labelled 1 or 2 (tumor voxels
            already there are only used as liver: the boxes say where the tumors are).
        boxes: Lesion boxes in world mm.
        affine: The map's ``(4, 4)`` voxel-to-world affine.
        ignore_label: Value for the uncertain part of each box.
        core: Scale of the tumor core: the inscribed ellipsoid's semi-axes times ``core`` (0: no core).

    Returns:
        ``uint8`` map with 0, 1, 2 and ``ignore_label``.
    """
    if not 0.0 <= core <= 1.0:
        raise ValueError(f"core={core} must lie in [0, 1]")
    liver = (np.asarray(labels) == LIVER) | (np.asarray(labels) == TUMOR)
    out = liver.astype(np.uint8) * LIVER
    cores = []
    for box in boxes:
        window = _window(box, liver.shape, affine)
        if window is None:
            continue
        world = _voxel_centres_world(liver.shape, affine, window)
        low, high = np.asarray(box.low, float), np.asarray(box.high, float)
        inside = np.all((world >= low) & (world <= high), axis=-1) & liver[window]
        out[window][inside] = ignore_label
        half = np.maximum((high - low) / 2 * core, 1e-6)
        in_core = inside & (np.sum(((world - (low + high) / 2) / half) ** 2, axis=-1) <= 1.0)
        cores.append((window, in_core))
    for window, in_core in cores:  # after every box: a core is tumor even inside another box
        out[window][in_core] = TUMOR
    return out


def boxes_from_labels(labels: np.ndarray, affine: np.ndarray, *, label: int = TUMOR) -> list[LesionBox]:
    """The tight world box (voxel edges, half a voxel beyond the outer centres) of every connected lesion
    (26-connectivity) of ``label`` in a dense map, as a radiologist would draw it."""
    components, _ = ndimage.label(np.asarray(labels) == label, structure=np.ones((3, 3, 3)))
    boxes = []
    for window in ndimage.find_objects(components):
        corners = np.array([[a, b, c, 1.0] for a in (window[0].start - 0.5, window[0].stop - 0.5)
                            for b in (window[1].start - 0.5, window[1].stop - 0.5)
                            for c in (window[2].start - 0.5, window[2].stop - 0.5)])  # fmt: skip
        world = (corners @ np.asarray(affine, dtype=float).T)[:, :3]
        boxes.append(LesionBox(tuple(world.min(0).tolist()), tuple(world.max(0).tolist()), label))
    return boxes


def read_boxes_csv(path: str | os.PathLike) -> dict[str, list[LesionBox]]:
    """Case id -> its boxes, from a CSV with :data:`BOX_COLUMNS` (``class`` optional: tumor).

    Raises:
        DataError: Unreadable file, missing columns, a value that is not a number, a box with ``min > max``,
            or a class other than tumor. The message names the file and the row.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"unreadable boxes CSV ({exc})", path=path) from None
    missing = [c for c in BOX_COLUMNS[:-1] if rows and c not in rows[0]]
    if not rows or missing:
        raise DataError(f"boxes CSV needs a header with {', '.join(BOX_COLUMNS)} and one row per box"
                        + (f" (missing {', '.join(missing)})" if missing else ""), path=path)
    out: dict[str, list[LesionBox]] = {}
    for number, row in enumerate(rows, start=2):
        try:
            values = [float(row[c]) for c in BOX_COLUMNS[1:7]]
        except (TypeError, ValueError):
            raise DataError(f"row {number}: box corners must be numbers (mm), got {row}", path=path) from None
        if any(a > b for a, b in zip(values[:3], values[3:])):
            raise DataError(f"row {number}: a box needs min <= max on each axis, got {values}", path=path)
        kind = str(row.get("class") or "tumor").strip().lower()
        if kind not in ("tumor", str(TUMOR)):
            raise DataError(f"row {number}: class {kind!r}; boxes are weak labels for tumors (tumor or 2)", path=path)
        out.setdefault(str(row["case"]).strip(), []).append(LesionBox(tuple(values[:3]), tuple(values[3:])))
    return out


def write_boxes_csv(path: str | os.PathLike, boxes: dict[str, list[LesionBox]]) -> Path:
    """Write ``boxes`` (case id -> boxes) as the CSV :func:`read_boxes_csv` reads, atomically."""
    import pandas as pd

    from medseg.utils.atomic import atomic_write_csv

    rows = [[case, *b.low, *b.high, "tumor"] for case, items in boxes.items() for b in items]
    return atomic_write_csv(path, pd.DataFrame(rows, columns=list(BOX_COLUMNS)))
