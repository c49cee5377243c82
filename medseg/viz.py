"""Figures of scans and label maps, in one palette and one CT window: axial overlays for reports and
notebooks (:func:`plot_overlays`) and the four-panel QA preview of a predicted case (:func:`preview_figure`).

Slices are shown in the radiological convention (patient's right on the viewer's left, anterior up),
whatever the storage orientation of the file, by going through :func:`medseg.io.to_canonical` (the
overlays) or the RAS axis permutation and flips of ``nibabel.orientations.io_orientation`` applied as array
views (the preview: a 512 x 512 x 300 scan is not copied); the aspect ratio follows the voxel spacing.

One palette (:data:`LIVER_RGB` green, :data:`TUMOR_RGB` red: saturated, so they never occur in a grey CT)
and one display window (:data:`WINDOW_HU`, abdominal soft tissue, -150..250 HU) for every figure. The
library never chooses a matplotlib backend: :func:`plot_overlays` imports ``pyplot`` inside the function,
and :func:`preview_figure` draws on a :class:`matplotlib.figure.Figure` with the Agg canvas, never through
pyplot, so it does not touch the caller's backend and is safe in worker processes.

The preview's four panels: 1. axial, 2. coronal and 3. sagittal slices through the centre of mass of the
liver (the middle of the scan when no liver is found), and 4. the axial slice where the largest lesion
(26-connected component of the tumor) has its largest area, the slice of its RECIST long axis (the liver's
axial slice, marked "no tumor found", when there is none); liver and tumor as contours with a legend, and a
caption.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.boxes import bounding_box
from medseg.io.orientation import to_canonical
from medseg.io.volume import Volume
from medseg.labels import LIVER, TUMOR, liver_mask, tumor_mask
from medseg.utils.paths import displayable

__all__ = ["LIVER_RGB", "TUMOR_RGB", "WINDOW_HU", "axial_slice", "choose_slices", "plot_overlays", "preview_figure",
           "preview_slices"]

#: Liver colour (RGB in [0, 1]): green.
LIVER_RGB = (0.1, 0.8, 0.2)
#: Tumor colour (RGB in [0, 1]): red.
TUMOR_RGB = (0.95, 0.15, 0.1)
#: Display window of every figure (abdominal soft tissue), HU.
WINDOW_HU = (-150.0, 250.0)

_COLOURS = {LIVER: LIVER_RGB, TUMOR: TUMOR_RGB}


def axial_slice(volume: Volume, z: int) -> np.ndarray:
    """Axial slice ``z`` (canonical S index) of ``volume`` as a 2D array in display orientation.

    Returns:
        ``(A, R)`` array: rows run anterior to posterior, columns patient right to left.
    """
    canon, _ = to_canonical(volume)
    return np.flipud(canon.array[:, :, z].T)[:, ::-1]


def choose_slices(label: Volume, count: int = 3) -> list[int]:
    """Canonical axial indices worth showing: the largest-tumor slice, then liver slices spread out."""
    canon, _ = to_canonical(label)
    area_liver = liver_mask(canon.array).sum(axis=(0, 1))
    area_tumor = tumor_mask(canon.array).sum(axis=(0, 1))
    picks: list[int] = []
    if area_tumor.any():
        picks.append(int(np.argmax(area_tumor)))
    liver_z = np.flatnonzero(area_liver)
    if liver_z.size:
        for q in np.linspace(0.25, 0.75, count):
            z = int(liver_z[int(q * (liver_z.size - 1))])
            if z not in picks:
                picks.append(z)
    if not picks:
        picks = [canon.shape[2] // 2]
    return sorted(picks[:count])


def _rgba(labels2d: np.ndarray, alpha: float) -> np.ndarray:
    out = np.zeros((*labels2d.shape, 4))
    for value, colour in _COLOURS.items():
        out[labels2d == value] = (*colour, alpha)
    return out


def plot_overlays(
    image: Volume,
    labels: Mapping[str, Volume],
    path: str | os.PathLike,
    *,
    slices: Sequence[int] | None = None,
    window_hu: tuple[float, float] = WINDOW_HU,
    title: str = "",
) -> Path:
    """Write a PNG grid: one row per slice, columns = the scan, then the scan with each label map.

    Args:
        image: The CT scan.
        labels: Named label maps on the scan's grid, e.g. ``{"reference": ref, "prediction": pred}``.
        path: Output PNG (written atomically).
        slices: Canonical axial indices; chosen from the first label map when ``None``.
        window_hu: Display window (abdominal soft tissue by default).
        title: Figure title.

    Returns:
        ``path``.
    """
    import matplotlib.pyplot as plt

    from medseg.utils.atomic import atomic_path

    for name, lab in labels.items():
        if not image.same_geometry(lab):
            raise ValueError(f"label map {name!r} does not share the scan's geometry")
    if slices is None:
        slices = choose_slices(next(iter(labels.values()))) if labels else [to_canonical(image)[0].shape[2] // 2]
    sx, sy, _ = to_canonical(image)[0].spacing_mm
    cols = 1 + len(labels)
    fig, axes = plt.subplots(len(slices), cols, figsize=(3.2 * cols, 3.2 * len(slices)), squeeze=False)
    for row, z in enumerate(slices):
        ct = axial_slice(image, z)
        for col in range(cols):
            ax = axes[row, col]
            ax.imshow(ct, cmap="gray", vmin=window_hu[0], vmax=window_hu[1], aspect=sy / sx,
                      interpolation="nearest")
            if col:
                name = list(labels)[col - 1]
                ax.imshow(_rgba(axial_slice(labels[name], z), 0.45), aspect=sy / sx, interpolation="nearest")
                ax.set_title(f"{name}, z={z}" if row == 0 else f"z={z}", fontsize=9)
            else:
                ax.set_title(f"scan, z={z}", fontsize=9)
            ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)


def preview_slices(labels: np.ndarray, ornt: np.ndarray | None = None) -> dict[str, int | None]:
    """Canonical (RAS) slice indices to show: ``axial``, ``coronal``, ``sagittal``, ``lesion``.

    Args:
        labels: ``(X, Y, Z)`` label map (0 background, 1 liver, 2 tumor) in its stored voxel order.
        ornt: ``nibabel.orientations.io_orientation`` of its affine (``None``: already RAS).

    Returns:
        Indices along the canonical S (``axial``, ``lesion``), A (``coronal``) and R (``sagittal``) axes;
        ``lesion`` is ``None`` without tumor. Two passes over the map, the rest on the foreground's box.
    """
    labels = np.asarray(labels)
    ornt = np.array([[0, 1], [1, 1], [2, 1]]) if ornt is None else np.asarray(ornt)
    box = bounding_box(labels)
    if box is None:
        centre = [n / 2 for n in labels.shape]
    else:
        local = labels[box]
        centre = [c + sl.start for c, sl in zip(_centre_of_mass(local != 0), box)]
    canonical = {}
    for axis, (world, flip) in enumerate(ornt):
        index = int(np.clip(round(centre[axis]), 0, labels.shape[axis] - 1))
        canonical[int(world)] = index if flip > 0 else labels.shape[axis] - 1 - index
    picks: dict[str, int | None] = {"axial": canonical[2], "coronal": canonical[1], "sagittal": canonical[0],
                                    "lesion": None}
    tumor_box = bounding_box(local == 2) if box is not None else None
    if tumor_box is not None:
        components, _ = ndimage.label(local[tumor_box] == 2, structure=np.ones((3, 3, 3), bool))
        largest = int(np.argmax(np.bincount(components.ravel())[1:])) + 1
        axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])  # the stored axis running inferior-superior
        areas = (components == largest).sum(axis=tuple(a for a in range(3) if a != axis))
        index = int(np.argmax(areas)) + box[axis].start + tumor_box[axis].start
        picks["lesion"] = index if ornt[axis, 1] > 0 else labels.shape[axis] - 1 - index
    return picks


_WORLD_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}  # the canonical (R, A, S) axis each plane cuts


def _stored_index(ornt: np.ndarray, shape: Sequence[int], world: int, index: int) -> tuple[int, int]:
    """``(file axis, index along it)`` of canonical slice ``index`` along world axis ``world``: the slice
    number a viewer shows for the file (0-based), not the reoriented grid's (issue #28: axial 10 was index 9
    of a file stored inferior to superior flipped)."""
    axis = int(np.flatnonzero(np.asarray(ornt)[:, 0] == world)[0])
    return axis, (index if ornt[axis][1] > 0 else shape[axis] - 1 - index)


def _centre_of_mass(mask: np.ndarray) -> list[float]:
    """Centre of mass (voxel indices) of a 3D boolean mask from its projections (two passes)."""
    plane = mask.sum(axis=2, dtype=np.int64)
    weights = [plane.sum(axis=1), plane.sum(axis=0), mask.sum(axis=(0, 1), dtype=np.int64)]
    return [float(np.dot(np.arange(w.size), w) / w.sum()) for w in weights]


def _view(array: np.ndarray, plane: str, index: int) -> np.ndarray:
    """2D display array of a canonical (RAS) volume: rows top to bottom, columns left to right on screen."""
    if plane == "axial":
        return np.flipud(array[:, :, index].T)[:, ::-1]  # anterior up, patient right on the left
    if plane == "coronal":
        return np.flipud(array[:, index, :].T)[:, ::-1]  # superior up, patient right on the left
    return np.flipud(array[index, :, :].T)[:, ::-1]  # sagittal: superior up, anterior on the left


def _canonical_view(volume: Volume) -> tuple[np.ndarray, tuple[float, float, float]]:
    """``volume.array`` as a RAS-ordered view (no copy) and the spacing of its axes."""
    from nibabel.orientations import apply_orientation

    ornt = _orientation(volume)
    spacing = [0.0, 0.0, 0.0]
    for axis, (world, _) in enumerate(ornt):
        spacing[int(world)] = volume.spacing_mm[axis]
    return apply_orientation(np.asarray(volume.array), ornt), tuple(spacing)


def _orientation(volume: Volume) -> np.ndarray:
    from nibabel.orientations import io_orientation

    return io_orientation(volume.affine)


def _aspect(spacing: Sequence[float], plane: str) -> float:
    sx, sy, sz = spacing
    return {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}[plane]


def preview_figure(image: Volume, labels: Volume, *, caption: str = "",
                   window_hu: tuple[float, float] = WINDOW_HU):
    """The preview as a :class:`matplotlib.figure.Figure` (Agg canvas attached).

    Args:
        image: ``(X, Y, Z)`` CT scan in HU.
        labels: Label map on the scan's grid (0 background, 1 liver, 2 tumor).
        caption: Text under the panels.
        window_hu: Display window.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if not image.same_geometry(labels):
        raise ValueError(f"label map (shape {labels.shape}) does not share the scan's grid (shape {image.shape})")
    ct, spacing = _canonical_view(image)
    lab, _ = _canonical_view(labels)
    picks = preview_slices(labels.array, _orientation(labels))
    panels = [("axial", picks["axial"], "axial (liver)"), ("coronal", picks["coronal"], "coronal (liver)"),
              ("sagittal", picks["sagittal"], "sagittal (liver)")]
    lesion = picks["lesion"]
    panels.append(("axial", lesion if lesion is not None else picks["axial"],
                   "axial (largest lesion)" if lesion is not None else "axial: no tumor found"))
    fig = Figure(figsize=(13.0, 4.2), dpi=90)
    FigureCanvasAgg(fig)
    liver_colour, tumor_colour = np.array(LIVER_RGB), np.array(TUMOR_RGB)
    for n, (plane, index, title) in enumerate(panels):
        ax = fig.add_subplot(1, 4, n + 1)
        ax.imshow(_view(ct, plane, index), cmap="gray", vmin=window_hu[0], vmax=window_hu[1],
                  aspect=_aspect(spacing, plane), interpolation="nearest")
        view = _view(lab, plane, index)
        for mask, colour in ((np.isin(view, (1, 2)), liver_colour), (view == 2, tumor_colour)):
            if mask.any() and not mask.all():
                ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=1.2)
        axis, stored = _stored_index(_orientation(labels), labels.shape, _WORLD_AXIS[plane], index)
        ax.set_title(f"{title}, slice {stored} (file axis {axis})", fontsize=9, y=1.0)  # fixed y: no tick layout
        ax.set_axis_off()
    handles = [Line2D([], [], color=liver_colour, lw=2, label="liver"),
               Line2D([], [], color=tumor_colour, lw=2, label="tumor")]
    fig.legend(handles=handles, loc="upper right", fontsize=8, frameon=False, ncol=2)
    fig.text(0.01, 0.02, displayable(caption), fontsize=8, va="bottom", ha="left", family="monospace")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.88, bottom=0.08 + 0.04 * caption.count("\n"), wspace=0.04)
    return fig
