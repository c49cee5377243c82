"""Labels on the scan's own grid from logits on the preprocessed grid, in bounded memory.

:func:`medseg.preprocessing.restore_to_scan` resamples every class map over the whole scan: for a
512 x 512 x 300 CT and 3 classes that is a 940 MB float32 array before the argmax. Here the same
trilinear map (``align_corners=False``, the preprocessing grid convention, as
``torch.nn.functional.interpolate``) is applied separably, one block of output slices at a time, and only
inside the box whose interpolation can touch a foreground voxel; everything else is background. Why this
holds: trilinear interpolation is a convex combination of 8 corner values, so where background has the
largest logit at all 8 corners it has it at the interpolated point too (for every class separately). Inside
the box the same holds for liver and tumor: only pixels whose corners disagree are interpolated
(:func:`_block_argmax`).
The result equals ``argmax(restore_to_scan(logits, record), axis=0)`` (tested), with peak memory of one
uint8 label map plus one block. Own code because ``F.interpolate`` cannot produce a sub-box of its output.

:func:`restore_probabilities_in_box` restores the softmax probabilities the same way, but only inside a box of
the scan's voxels (the dense CRF's liver box): ``K * 4`` bytes per voxel of the box instead of the scan
(0.9 GB for 3 classes on 512 x 512 x 298), equal to cropping ``restore_to_scan(softmax(logits), record)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from medseg.io.orientation import canonical_box, from_canonical

__all__ = ["argmax_classes", "lerp_axis", "linear_indices", "restore_argmax", "restore_probabilities_in_box"]


def linear_indices(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Corner indices and weights of 1D linear resampling from ``n_in`` to ``n_out`` samples.

    Same rule as ``F.interpolate(mode="linear", align_corners=False)``: output ``j`` samples input
    coordinate ``max(0, (j + 0.5) * n_in / n_out - 0.5)`` between the neighbours ``i0`` and ``i1``.

    Returns:
        ``(i0, i1, w)``, each ``(n_out,)``: value ``= a[i0] * (1 - w) + a[i1] * w``.
    """
    scale = n_in / n_out
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0.0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    return i0, i1, (src - i0).float()


def lerp_axis(array: torch.Tensor, axis: int, i0: torch.Tensor, i1: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``array`` along ``axis`` at corners ``i0``/``i1`` with weights ``w``."""
    shape = [1] * array.ndim
    shape[axis] = -1
    w = w.view(shape)
    return torch.lerp(array.index_select(axis, i0), array.index_select(axis, i1), w)


def argmax_classes(scores: torch.Tensor) -> torch.Tensor:
    """``scores.argmax(0)`` as uint8 for ``(K, ...)`` scores (first maximum wins, as argmax).

    A running maximum over the K classes: torch's ``argmax`` over a short leading axis is ~10x slower
    on CPU (a strided reduction).
    """
    best = scores[0].clone()
    out = torch.zeros(scores.shape[1:], dtype=torch.uint8, device=scores.device)
    for k in range(1, scores.shape[0]):
        better = scores[k] > best
        out[better] = k
        torch.maximum(best, scores[k], out=best)
    return out


def restore_argmax(
    logits: torch.Tensor | np.ndarray,
    record,
    *,
    slices_per_block: int = 16,
) -> np.ndarray:
    """``argmax`` over classes of the trilinearly restored logits, on the source scan's voxel grid.

    Args:
        logits: ``(K, X, Y, Z)`` logits (or probabilities) on the preprocessed grid
            (``record.resampled_shape``), class 0 = background.
        record: The scan's :class:`medseg.preprocessing.PreprocessRecord`.
        slices_per_block: Output slices (canonical last axis) interpolated at once.

    Returns:
        uint8 ``(X0, Y0, Z0)`` labels in the source file's voxel order (``record.source_shape``).
    """
    logits = torch.as_tensor(logits)
    if logits.ndim != 4 or tuple(logits.shape[1:]) != tuple(record.resampled_shape):
        raise ValueError(f"logits must be (K, {', '.join(map(str, record.resampled_shape))}), "
                         f"got {tuple(logits.shape)}")
    out_shape = tuple(record.canonical_shape)
    labels = np.zeros(out_shape, dtype=np.uint8)
    classes = argmax_classes(logits)
    foreground = classes > 0
    if bool(foreground.any()):
        corners = [linear_indices(n_in, n_out) for n_in, n_out in zip(logits.shape[1:], out_shape)]
        keep = []  # per axis: output indices whose corners reach the foreground's extent
        for axis, (i0, i1, _) in enumerate(corners):
            other = tuple(a for a in range(3) if a != axis)
            idx = torch.nonzero(foreground.any(dim=other)).flatten()
            lo, hi = int(idx[0]), int(idx[-1])
            hits = torch.nonzero((i1 >= lo) & (i0 <= hi)).flatten()
            keep.append((int(hits[0]), int(hits[-1]) + 1))
        sel = [tuple(t[a:b] for t in c) for c, (a, b) in zip(corners, keep)]
        for start in range(0, len(sel[2][0]), slices_per_block):
            z = tuple(t[start : start + slices_per_block] for t in sel[2])
            zs = keep[2][0] + start
            labels[keep[0][0] : keep[0][1], keep[1][0] : keep[1][1], zs : zs + len(z[0])] = (
                _block_argmax(logits, classes, sel[0], sel[1], z).numpy()
            )
    return from_canonical(labels, record.reorientation)


def _block_argmax(logits: torch.Tensor, classes: torch.Tensor, x: tuple, y: tuple, z: tuple) -> torch.Tensor:
    """uint8 argmax of the restored logits at the output voxels whose corners are ``x``, ``y``, ``z`` (each
    ``(i0, i1, w)`` of :func:`linear_indices`), interpolated only where the corners disagree.

    An output pixel whose 4 in-plane corners hold one class ``c`` (``classes``, the argmax on the
    preprocessed grid) over every input slice of the block gets ``c`` (the module doc's convex-combination
    argument, for every class, not only background); elsewhere the logits are interpolated as a full block
    would be (z, then x, then y, the same ``torch.lerp`` of the same values) at those pixels only. About a
    tenth of a liver box's pixels lie on a boundary: 2.8 s -> 0.5 s on a 512 x 512 x 298 scan, the same label
    map (bench scan of docs/benchmarks.md, bitwise). In float arithmetic the two differ only where a corner
    holds a tie to rounding (~1e-7 of the logit), as before for background.
    """
    (x0, x1, wx), (y0, y1, wy), (z0, z1, wz) = x, y, z
    zlo, zhi = int(z0.min()), int(z1.max()) + 1
    xlo, ylo = int(x0.min()), int(y0.min())
    column = classes[:, :, zlo:zhi]
    low, high = column.amin(dim=2), column.amax(dim=2)
    lowest = torch.minimum(torch.minimum(low[x0][:, y0], low[x0][:, y1]), torch.minimum(low[x1][:, y0], low[x1][:, y1]))
    highest = torch.maximum(torch.maximum(high[x0][:, y0], high[x0][:, y1]),
                            torch.maximum(high[x1][:, y0], high[x1][:, y1]))  # fmt: skip
    out = lowest[:, :, None].expand(-1, -1, len(z0)).clone()
    i, j = torch.nonzero(lowest != highest, as_tuple=True)
    if len(i):
        block = logits[:, xlo : int(x1.max()) + 1, ylo : int(y1.max()) + 1, zlo:zhi].float()
        block = lerp_axis(block, 3, z0 - zlo, z1 - zlo, wz)  # (K, X', Y', slices)
        xa, xb, ya, yb = x0[i] - xlo, x1[i] - xlo, y0[j] - ylo, y1[j] - ylo
        w_x, w_y = wx[i][:, None], wy[j][:, None]
        top = torch.lerp(block[:, xa, ya], block[:, xb, ya], w_x)  # (K, N, slices): x first, as a full block
        bottom = torch.lerp(block[:, xa, yb], block[:, xb, yb], w_x)
        out[i, j] = argmax_classes(torch.lerp(top, bottom, w_y))
    return out


def restore_probabilities_in_box(logits: torch.Tensor | np.ndarray, record, box: Sequence[slice], *,
                                 slices_per_block: int = 16) -> np.ndarray:
    """Softmax probabilities restored to the scan's grid inside ``box`` only (see the module doc).

    Args:
        logits: ``(K, X, Y, Z)`` logits on the preprocessed grid (``record.resampled_shape``).
        record: The scan's :class:`medseg.preprocessing.PreprocessRecord`.
        box: Three ``slice(start, stop)`` (step 1) of the source file's voxel order.
        slices_per_block: Output slices (canonical last axis) interpolated at once.

    Returns:
        float32 ``(K, *box shape)``: ``restore_to_scan(softmax(logits), record)[(slice(None), *box)]``.
    """
    logits = torch.as_tensor(logits)
    if logits.ndim != 4 or tuple(logits.shape[1:]) != tuple(record.resampled_shape):
        raise ValueError(f"logits must be (K, {', '.join(map(str, record.resampled_shape))}), "
                         f"got {tuple(logits.shape)}")
    canonical = canonical_box(box, record.reorientation)
    sel = [tuple(t[s] for t in linear_indices(n_in, n_out)) for n_in, n_out, s
           in zip(logits.shape[1:], record.canonical_shape, canonical)]  # fmt: skip
    (x0, x1, wx), (y0, y1, wy) = sel[0], sel[1]
    xlo, xhi, ylo, yhi = int(x0.min()), int(x1.max()) + 1, int(y0.min()), int(y1.max()) + 1
    out = np.empty((logits.shape[0], len(x0), len(y0), len(sel[2][0])), dtype=np.float32)
    for start in range(0, out.shape[3], slices_per_block):
        z0, z1, wz = (t[start : start + slices_per_block] for t in sel[2])
        zlo, zhi = int(z0.min()), int(z1.max()) + 1
        block = torch.softmax(logits[:, xlo:xhi, ylo:yhi, zlo:zhi].float(), dim=0)
        block = lerp_axis(block, 3, z0 - zlo, z1 - zlo, wz)
        block = lerp_axis(block, 1, x0 - xlo, x1 - xlo, wx)
        out[..., start : start + block.shape[3]] = lerp_axis(block, 2, y0 - ylo, y1 - ylo, wy).numpy()
    return from_canonical(out, record.reorientation, box=box)
