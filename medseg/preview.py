"""A QA picture per predicted case: ``<case>_preview.png``, to check a cohort at a glance.

Four panels in the radiological convention (patient's right on the viewer's left; superior up; anterior
up in axial, left in sagittal), whatever the file's voxel order (the RAS axis permutation and flips of
``nibabel.orientations.io_orientation``, applied as array views, so a 512 x 512 x 300 scan is not copied),
with the aspect ratio of the voxel spacing:

1. axial, 2. coronal and 3. sagittal slices through the centre of mass of the liver (the middle of the
   scan when no liver is found), and
4. the axial slice where the largest lesion (26-connected component of the tumor) has its largest area,
   the slice of its RECIST long axis (the liver's axial slice, marked "no tumor found", when there is none).

The CT is shown in a liver window (W 400, L 40 HU: -160..240), the liver and tumor as contours in fixed
colours (:data:`LIVER_RGB`, :data:`TUMOR_RGB`) with a legend, and a caption with the case's volumes and
warnings. Drawn on a :class:`matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so it
does not touch the caller's matplotlib backend and is safe in worker processes.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.boxes import bounding_box
from medseg.io.volume import Volume
from medseg.utils.paths import displayable

__all__ = [
    "LIVER_RGB",
    "LIVER_WINDOW_HU",
    "TUMOR_RGB",
    "preview_caption",
    "preview_figure",
    "preview_filename",
    "preview_slices",
    "write_preview",
]

#: Contour colours (8-bit RGB): saturated, so they never occur in a grey CT.
LIVER_RGB = (0, 200, 255)
TUMOR_RGB = (255, 40, 200)
#: Liver window (W 400, L 40), HU.
LIVER_WINDOW_HU = (-160.0, 240.0)


def preview_filename(case_id: str) -> str:
    """File name of the preview written next to ``<case>_seg.nii.gz``."""
    return f"{case_id}_preview.png"


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


def preview_caption(case_id: str, report: Mapping | None, warnings: Sequence[str] = ()) -> str:
    """The caption: volumes, burden, lesions (largest: RECIST axes) and warnings of one case."""
    parts = [case_id]
    if report:
        parts.append(f"liver {report['liver_ml']:.1f} mL, tumor {report['tumor_ml']:.2f} mL "
                     f"(burden {report['tumor_burden_percent']:.2f} %), {report['lesion_count']} lesion(s)")
        if report.get("lesions"):
            big = report["lesions"][0]
            parts.append(f"largest {big['volume_ml']:.2f} mL, {big['axial_diameter_mm']:.1f} x "
                         f"{big.get('short_axis_mm', float('nan')):.1f} mm axial")
    text = "  |  ".join(parts)
    if warnings:
        text += "\nwarnings: " + "; ".join(warnings)
    return "\n".join(textwrap.fill(line, 150) for line in text.splitlines())


def preview_figure(image: Volume, labels: Volume, *, caption: str = "",
                   window_hu: tuple[float, float] = LIVER_WINDOW_HU):
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
    liver_colour, tumor_colour = np.array(LIVER_RGB) / 255, np.array(TUMOR_RGB) / 255
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


def write_preview(image: Volume, labels: Volume, path: str | os.PathLike, *, caption: str = "") -> Path:
    """Write :func:`preview_figure` as a PNG atomically; returns ``path``."""
    from medseg.utils.atomic import atomic_path

    fig = preview_figure(image, labels, caption=caption)
    with atomic_path(path) as tmp:
        # zlib level 1: the encoding takes a few ms instead of ~0.1 s at the default 6, for a slightly larger file
        fig.savefig(tmp, format="png", pil_kwargs={"compress_level": 1})
    return Path(path)
