"""Pictures of scans and label maps: axial slices with label overlays, for reports and notebooks.

Slices are shown in the radiological convention (patient's right on the viewer's left, anterior up),
whatever the storage orientation of the file, by going through :func:`medseg.io.to_canonical`; the
aspect ratio follows the voxel spacing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medseg.io.orientation import to_canonical
from medseg.io.volume import Volume
from medseg.labels import LIVER, TUMOR, liver_mask, tumor_mask

__all__ = ["axial_slice", "choose_slices", "plot_overlays"]

_COLOURS = {LIVER: (0.1, 0.8, 0.2), TUMOR: (0.95, 0.15, 0.1)}  # liver green, tumor red


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
    window_hu: tuple[float, float] = (-150.0, 250.0),
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
