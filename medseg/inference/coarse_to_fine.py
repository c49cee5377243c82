"""Coarse-to-fine prediction: find the liver at low resolution, then run full resolution only around it.

A coarse pass at ``factor`` times the spacing (no window overlap: about ``factor^3 * 2^3`` times fewer
windows than the fine pass) gives a foreground map; the fine pass runs only in the bounding box of its
components plus ``margin_mm``. The idea is the cascade of nnU-Net (Isensee et al. 2021, *Nature Methods*
18:203), where a low-resolution network's segmentation decides where the full-resolution network looks;
here the same network serves both passes, as in the coarse-to-fine localisation of Roth et al. 2018
(*Medical Image Analysis* 45:94).

A coarse pass at twice the spacing sees the liver at half the size it was trained on: it can cut a liver
in two, miss a lobe, or find a smaller liver than the true one. So the box is only a first guess, and the
fine pass checks it: where the fine foreground comes closer than ``guard_mm`` to a face of the box that is
not the scan's edge, the liver may go on outside it, so that face moves out by ``2 * margin_mm`` (beyond the
fine foreground's reach) and the fine pass runs again, up to ``max_rounds`` times, then over the whole
scan. The result is then the full-resolution prediction of every voxel of the liver, whatever the coarse
pass missed (tested with constructed coarse maps: split, at the scan's edge, too small).

A coarse pass can also miss the liver altogether and find only a stray false positive: its box then holds
a few millilitres, and the fine pass finds little or nothing there, far from any face. So a box is trusted
only when the fine pass finds at least ``min_volume_ml`` of foreground in it (100 mL: no adult liver is
smaller; a liver cut by the field of view that is smaller only costs the time of a whole-scan pass);
otherwise the whole scan is predicted. The coarse volume itself decides nothing (at half the resolution
the coarse pass finds too little liver as a rule, and the fine pass corrects it).

Own code: MONAI and nnU-Net have no single-network coarse-to-fine loop with a box check.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from medseg.boxes import bounding_box, box_on_grid
from medseg.geometry import voxel_volume_ml
from medseg.inference.restore import argmax_classes
from medseg.inference.sliding_window import MAX_OVERLAP, WindowBlend, WindowSettings, predict_logits

__all__ = [
    "CoarseToFineSettings",
    "coarse_foreground",
    "faces_reached",
    "foreground_box",
    "grow_faces",
    "locate_box",
    "predict_coarse_to_fine",
    "refine_in_box",
    "refine_or_predict",
    "volume_ml",
]

logger = logging.getLogger(__name__)

Box = tuple[slice, slice, slice]
Network = Callable[[torch.Tensor], torch.Tensor]
#: A face of a box: ``(axis, side)`` with side 0 the low face (``start``) and 1 the high face (``stop``).
Face = tuple[int, int]

_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class CoarseToFineSettings:
    """How the coarse pass finds the box and how the fine pass checks it.

    Attributes:
        factor: Spacing multiplier of the coarse pass (>= 1).
        overlap: Window overlap of the coarse pass, in ``[0, 1)``.
        margin_mm: Margin added around the coarse foreground's box (>= 0).
        guard_mm: The fine foreground must stay this far inside every face of the box that is not the
            scan's edge; where it comes closer, the box grows (0: only foreground on the face; ``None``:
            a third of ``margin_mm``, so that a box the coarse pass got right takes one fine pass).
        min_fraction: Foreground components smaller than this fraction of the largest are ignored, both
            in the coarse map (stray false positives) and in the fine check.
        max_rounds: Fine passes with a grown box before falling back to the whole scan (>= 1).
        min_volume_ml: Least foreground (its components that count, see ``min_fraction``) that the fine
            pass must find in the box for the box to be trusted; below it the whole scan is predicted
            (0: any foreground).
    """

    factor: float = 2.0
    overlap: float = 0.0
    margin_mm: float = 15.0
    guard_mm: float | None = None
    min_fraction: float = 0.1
    max_rounds: int = 4
    min_volume_ml: float = 100.0

    def __post_init__(self) -> None:
        if not self.factor >= 1.0:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if not 0.0 <= self.overlap <= MAX_OVERLAP:
            raise ValueError(f"overlap must be in [0, {MAX_OVERLAP}], got {self.overlap}")
        if not self.margin_mm >= 0:
            raise ValueError(f"margin_mm must be >= 0, got {self.margin_mm}")
        if self.guard_mm is None:
            object.__setattr__(self, "guard_mm", self.margin_mm / 3.0)
        if not self.guard_mm >= 0:
            raise ValueError(f"guard_mm must be >= 0, got {self.guard_mm}")
        if not 0.0 <= self.min_fraction <= 1.0:
            raise ValueError(f"min_fraction must be in [0, 1], got {self.min_fraction}")
        if self.max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, got {self.max_rounds}")
        if not self.min_volume_ml >= 0:
            raise ValueError(f"min_volume_ml must be >= 0, got {self.min_volume_ml}")


def predict_coarse_to_fine(
    coarse_network: Network,
    fine_network: Network,
    image: torch.Tensor,
    window: WindowSettings,
    settings: CoarseToFineSettings,
    *,
    spacing_mm: Sequence[float],
    mask: torch.Tensor | np.ndarray | None = None,
    affine: np.ndarray | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Logits ``(K, X, Y, Z)`` of the fine pass in a box found by a coarse pass, and statistics.

    Args:
        coarse_network: The network of the coarse pass (no test-time augmentation needed to find a box).
        fine_network: The network of the fine pass (may be a test-time-augmentation wrapper).
        image: ``(C, X, Y, Z)`` preprocessed image.
        window: Sliding-window settings of the fine pass (the coarse pass uses them with ``settings.overlap``).
        settings: :class:`CoarseToFineSettings`.
        spacing_mm: Spacing of ``image``'s grid (mm per voxel along X, Y, Z).
        mask: ``(X, Y, Z)`` boolean body mask (windows without a True voxel are skipped), or ``None``.
        affine: ``(4, 4)`` affine of ``image``'s grid: volumes (mL) from ``|det|`` of it (exact on a tilted or
            sheared grid); ``None``: the product of ``spacing_mm``.

    Returns:
        The logits (background outside the final box) and ``{"coarse_box", "coarse_ml", "box", "rounds",
        "coarse_s", "fine_s"}``: the boxes as ``[start, stop]`` per axis (``None``: whole scan) and the fine
        passes run.
    """
    box, stats = locate_box([coarse_network], image, window, settings, spacing_mm=spacing_mm, mask=mask,
                            affine=affine)
    logits, steps = refine_or_predict(fine_network, image, window, box, settings, spacing_mm=spacing_mm, mask=mask,
                                      affine=affine)
    return logits, {**stats, **steps}


def locate_box(networks: Sequence[Network], image: torch.Tensor, window: WindowSettings,
               settings: CoarseToFineSettings, *, spacing_mm: Sequence[float],
               mask: torch.Tensor | np.ndarray | None = None,
               affine: np.ndarray | None = None) -> tuple[Box | None, dict[str, Any]]:
    """The coarse pass of :func:`predict_coarse_to_fine`: the first box on the fine grid (``None``: no
    foreground) and ``{"coarse_s", "coarse_box", "coarse_ml"}``. Several ``networks`` (the folds of an
    ensemble) find one box from their mean probabilities."""
    t0 = time.perf_counter()
    coarse = coarse_foreground(networks, image, replace(window, overlap=settings.overlap), factor=settings.factor,
                               mask=mask)
    kept = _large_components(coarse, settings.min_fraction)
    box = _box_on_fine_grid(kept, image.shape[1:], margin_vox=[settings.margin_mm / s for s in spacing_mm])
    scale = [n / m for n, m in zip(image.shape[1:], coarse.shape)]  # fine voxels per coarse voxel, per axis
    coarse_affine = None if affine is None else np.asarray(affine, dtype=float) @ np.diag([*scale, 1.0])
    coarse_ml = volume_ml(kept, [s * f for s, f in zip(spacing_mm, scale)], affine=coarse_affine)
    return box, {"coarse_s": time.perf_counter() - t0, "coarse_box": _as_list(box), "coarse_ml": coarse_ml}


def refine_or_predict(network: Network, image: torch.Tensor, window: WindowSettings, box: Box | None,
                      settings: CoarseToFineSettings, *, spacing_mm: Sequence[float],
                      mask: torch.Tensor | np.ndarray | None = None,
                      affine: np.ndarray | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """The fine pass of :func:`predict_coarse_to_fine` from the coarse ``box`` (``None``: the whole scan):
    the logits and ``{"box", "rounds", "fine_s"}``."""
    t0 = time.perf_counter()
    if box is None:
        logger.info("coarse pass found no foreground; predicting the whole scan")
        logits, rounds = predict_logits(network, image, window, mask=mask), 1
    else:
        logits, box, rounds = refine_in_box(network, image, window, box, settings, spacing_mm=spacing_mm, mask=mask,
                                            affine=affine)
    return logits, {"box": _as_list(box), "rounds": rounds, "fine_s": time.perf_counter() - t0}


def coarse_foreground(networks: Network | Sequence[Network], image: torch.Tensor, window: WindowSettings, *,
                      factor: float, mask: torch.Tensor | np.ndarray | None = None) -> np.ndarray:
    """Foreground (argmax > 0) of ``networks`` on ``image`` resampled to ``factor`` times its spacing.

    Args:
        networks: One network, or several (folds) whose softmax probabilities are averaged, one network
            at a time (memory: two coarse maps of ``K`` classes, whatever their number).
        image: ``(C, X, Y, Z)`` preprocessed image; resampled trilinearly (``mask``: nearest).

    Returns:
        ``(X', Y', Z')`` boolean on the coarse grid, ``X' = max(1, round(X / factor))``.
    """
    from medseg.preprocessing import resample_array

    networks = [networks] if callable(networks) else list(networks)
    coarse_shape = tuple(max(1, round(n / factor)) for n in image.shape[1:])
    coarse = resample_array(image, out_shape=coarse_shape, mode="trilinear")
    coarse_mask = None if mask is None else resample_array(mask, out_shape=coarse_shape, mode="nearest")
    if len(networks) == 1:
        return argmax_classes(predict_logits(networks[0], coarse, window, mask=coarse_mask)).numpy() > 0
    total = None
    for network in networks:
        probabilities = torch.softmax(predict_logits(network, coarse, window, mask=coarse_mask), dim=0)
        total = probabilities if total is None else total.add_(probabilities)
    return argmax_classes(total).numpy() > 0


def refine_in_box(network: Network, image: torch.Tensor, window: WindowSettings, box: Box,
                  settings: CoarseToFineSettings, *, spacing_mm: Sequence[float],
                  mask: torch.Tensor | np.ndarray | None = None,
                  affine: np.ndarray | None = None) -> tuple[torch.Tensor, Box | None, int]:
    """The fine pass in ``box``, grown and re-run while its foreground reaches a face (see module doc).

    A grown box runs only the windows the earlier boxes did not run, and its result blends the windows
    of every box so far (:class:`~medseg.inference.sliding_window.WindowBlend`: running sums, no window
    outputs kept).

    Returns:
        ``(logits, box, rounds)``: the last pass's logits, its box (``None`` after falling back to the
        whole scan) and the number of fine passes run.
    """
    shape = tuple(image.shape[1:])
    guard_vox = [math.ceil(settings.guard_mm / s) for s in spacing_mm]
    step_vox = [max(1, math.ceil(2 * settings.margin_mm / s)) for s in spacing_mm]
    blend = WindowBlend(image, window, mask=mask)
    for rounds in range(1, settings.max_rounds + 1):
        blend.run(network, box=box)
        foreground = _large_components(blend.foreground(), settings.min_fraction)
        faces = [] if foreground is None else faces_reached(foreground, box, guard_vox=guard_vox, min_fraction=0.0)
        if not faces:
            found_ml = volume_ml(foreground, spacing_mm, affine=affine)
            if found_ml >= settings.min_volume_ml:
                return blend.logits(), box, rounds
            logger.info("the fine pass found %.1f mL in the box (< %g mL); predicting the whole scan", found_ml,
                        settings.min_volume_ml)
            break
        # a tiled box near the edge needs the edge's window anyway; grid windows (centred, reach) do not
        snap = window.window if window.box_windows == "tile" else None
        box = grow_faces(box, faces, shape, step_vox=step_vox, foreground=foreground, snap_vox=snap)
        logger.info("fine foreground reaches the box faces %s; growing the box to %s", faces, _as_list(box))
    else:
        logger.info("the box still grows after %d fine passes; predicting the whole scan", settings.max_rounds)
    blend.run(network)
    return blend.logits(), None, rounds + 1


def foreground_box(foreground: np.ndarray, fine_shape: Sequence[int], *, margin_vox: Sequence[float],
                   min_fraction: float = 0.1) -> Box | None:
    """Bounding box on the fine grid of the foreground components that matter, plus a margin.

    Args:
        foreground: ``(X', Y', Z')`` boolean on the coarse grid; coarse voxel ``i`` covers fine voxels
            ``[i * X / X', (i + 1) * X / X')`` (the grid convention of the resampling).
        fine_shape: ``(X, Y, Z)``.
        margin_vox: Margin in fine voxels per axis.
        min_fraction: 26-connected components smaller than this fraction of the largest are left out
            (a liver that the coarse pass split keeps all its large pieces).

    Returns:
        The box (slices clamped to ``fine_shape``), or ``None`` when there is no foreground.
    """
    return _box_on_fine_grid(_large_components(foreground, min_fraction), fine_shape, margin_vox=margin_vox)


def _box_on_fine_grid(kept: np.ndarray | None, fine_shape: Sequence[int], *, margin_vox: Sequence[float]
                      ) -> Box | None:
    """:func:`foreground_box` of the components already kept (``None``: no box)."""
    if kept is None:
        return None
    return box_on_grid(bounding_box(kept), kept.shape, fine_shape, margin=margin_vox)


def faces_reached(foreground: np.ndarray, box: Box, *, guard_vox: Sequence[int], min_fraction: float = 0.1
                  ) -> list[Face]:
    """Faces of ``box`` that the foreground comes within ``guard_vox`` of (faces on the scan's edge excluded).

    Args:
        foreground: ``(X, Y, Z)`` boolean fine foreground over the whole grid (outside ``box`` it is only
            what the windows grown past the box predicted).
        box: The box the fine pass ran in.
        guard_vox: Per axis, how many voxels inside a face still count as reaching it.
        min_fraction: Components smaller than this fraction of the largest are ignored.

    Returns:
        ``(axis, side)`` pairs, side 0 for the low face, 1 for the high face.
    """
    kept = _large_components(foreground, min_fraction)
    if kept is None:
        return []
    faces = []
    for axis, (s, n, g, extent) in enumerate(zip(box, foreground.shape, guard_vox, bounding_box(kept))):
        if s.start > 0 and extent.start < s.start + g:
            faces.append((axis, 0))
        if s.stop < n and extent.stop - 1 >= s.stop - g:
            faces.append((axis, 1))
    return faces


def grow_faces(box: Box, faces: Sequence[Face], shape: Sequence[int], *, step_vox: Sequence[int],
               foreground: np.ndarray | None = None, snap_vox: Sequence[int] | None = None) -> Box:
    """``box`` with each of ``faces`` moved out by ``step_vox`` (and past ``foreground``'s extent by as
    much), clamped to ``shape``; a face that ends closer than ``snap_vox`` (a window) to the scan's edge
    goes to the edge (one more pass could not run fewer windows there). Per face, unlike the uniform
    :func:`medseg.boxes.grow_box`."""
    lo, hi = [s.start for s in box], [s.stop for s in box]
    reached = None if foreground is None else bounding_box(foreground)
    for axis, side in faces:
        extent = None if reached is None else (reached[axis].start, reached[axis].stop)
        if side == 0:
            reach = lo[axis] if extent is None else min(lo[axis], extent[0])
            lo[axis] = max(0, reach - step_vox[axis])
            if snap_vox is not None and lo[axis] < snap_vox[axis]:
                lo[axis] = 0
        else:
            reach = hi[axis] if extent is None else max(hi[axis], extent[1])
            hi[axis] = min(shape[axis], reach + step_vox[axis])
            if snap_vox is not None and shape[axis] - hi[axis] < snap_vox[axis]:
                hi[axis] = shape[axis]
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def _large_components(foreground: np.ndarray, min_fraction: float) -> np.ndarray | None:
    """``foreground`` without its 26-connected components smaller than ``min_fraction`` of the largest
    (``None`` when empty)."""
    components, n = ndimage.label(foreground, structure=_CONNECTIVITY)
    if n == 0:
        return None
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    keep = sizes >= min_fraction * sizes.max()
    keep[0] = False
    return keep[components]


def volume_ml(mask: np.ndarray | None, spacing_mm: Sequence[float], *, affine: np.ndarray | None = None) -> float:
    """Volume of a boolean ``(X, Y, Z)`` mask in mL (0 for ``None``)."""
    return 0.0 if mask is None else float(np.count_nonzero(mask)) * voxel_volume_ml(spacing_mm, affine=affine)


def _as_list(box: Box | None) -> list[list[int]] | None:
    return None if box is None else [[b.start, b.stop] for b in box]
