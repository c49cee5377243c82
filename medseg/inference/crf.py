"""Dense (fully connected) CRF refinement of a scan's class probabilities, in world units (mm and HU).

Mean-field inference of the fully connected CRF of Krähenbühl & Koltun, "Efficient Inference in Fully
Connected CRFs with Gaussian Edge Potentials", NeurIPS 2011 (Algorithm 1), as Christ et al. used it in 3D
for the liver (MICCAI 2016, arXiv:1610.02177): unaries ``-log P`` from the network's probabilities, a Potts
compatibility, and two Gaussian edge potentials between every pair of voxels ``i != j``

* smoothness: ``w_s exp(-|p_i - p_j|^2 / 2 theta_s^2)`` (positions in mm), and
* appearance (bilateral): ``w_a exp(-|p_i - p_j|^2 / 2 theta_a^2 - (I_i - I_j)^2 / 2 theta_hu^2)`` (HU).

Each iteration needs the sums ``sum_{j != i} k(i, j) Q_j(l)`` over all voxels. The smoothness sum is an exact
separable Gaussian filter (:func:`scipy.ndimage.gaussian_filter`, zero outside the volume, rescaled to the
unnormalised kernel and minus the voxel's own term). The appearance sum is not separable in space and
intensity; it is computed on a **bilateral grid** (Chen, Paris & Durand, SIGGRAPH 2007): values splatted
with linear weights onto a coarse (x, y, z, HU) grid of cell size ``theta / 2``, blurred there by a
separable Gaussian of two cells, and read back by linear interpolation. Memory is the grid (a few MB), a
chunk of voxels' corner bookkeeping (about 200 MB, whatever the box) and a few copies of the probabilities,
independent of the kernel's width; a permutohedral lattice (Adams et al.
2010, used by Krähenbühl's C++ code) is faster in high dimensions, but with four dimensions the grid is
simple, vectorised and accurate to a few percent of the brute-force sums (tested). Our own code: no
maintained Python package computes the 3D dense CRF (``pydensecrf`` is unmaintained since 2018 and needs a
compiler; SimpleCRF last released in 2021).

Only the region that matters is refined: the probabilities inside the predicted liver's bounding box plus a
margin (:func:`refine_labels`), so a LiTS-size scan costs the liver's box, not the scan.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from medseg.errors import ConfigError

__all__ = ["CrfSettings", "dense_crf", "pairwise_sums_bruteforce", "refine_labels"]

_EPS = 1e-6


@dataclass(frozen=True)
class CrfSettings:
    """The CRF's parameters (the ``crf`` key of a pipeline's ``postprocessing``; ``medseg predict --crf``).

    Attributes:
        iterations: Mean-field iterations (Krähenbühl & Koltun: 5 suffice).
        smoothness_weight: ``w_s``.
        smoothness_mm: ``theta_s``, in mm.
        appearance_weight: ``w_a``.
        appearance_mm: ``theta_a``, in mm.
        appearance_hu: ``theta_hu``, in HU.
        hu_range: Intensities are clipped to this range for the appearance kernel (air and bone differ from
            the liver either way; the clip bounds the bilateral grid's size).
        margin_mm: Margin around the predicted liver's box that is refined too.
    """

    iterations: int = 5
    smoothness_weight: float = 1.0
    smoothness_mm: float = 2.0
    appearance_weight: float = 3.0
    appearance_mm: float = 8.0
    appearance_hu: float = 15.0
    hu_range: tuple[float, float] = (-200.0, 400.0)
    margin_mm: float = 10.0

    def __post_init__(self) -> None:
        if not (isinstance(self.iterations, int) and 1 <= self.iterations <= 50):
            raise ConfigError(f"crf.iterations must be an integer in 1..50, got {self.iterations!r}")
        for name in ("smoothness_mm", "appearance_mm", "appearance_hu"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ConfigError(f"crf.{name} must be > 0, got {getattr(self, name)!r}")
        if not (len(self.hu_range) == 2 and self.hu_range[0] < self.hu_range[1]):
            raise ConfigError(f"crf.hu_range must be (low, high) with low < high, got {self.hu_range!r}")
        object.__setattr__(self, "hu_range", tuple(float(v) for v in self.hu_range))
        for name in ("smoothness_weight", "appearance_weight", "margin_mm"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ConfigError(f"crf.{name} must be >= 0, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _smoothness_sums(q: np.ndarray, spacing_mm: Sequence[float], theta_mm: float) -> np.ndarray:
    """``sum_{j != i} exp(-|p_i - p_j|^2 / 2 theta^2) q_j`` for each class, exactly (separable, zero outside)."""
    sigma = [theta_mm / s for s in spacing_mm]
    radius = [int(4.0 * s + 0.5) for s in sigma]
    # gaussian_filter normalises its 1D kernels; the unnormalised kernel is their product times the sums
    scale = math.prod(float(np.exp(-0.5 * (np.arange(-r, r + 1) / s) ** 2).sum()) for r, s in zip(radius, sigma))
    out = np.empty_like(q)
    for k in range(q.shape[0]):
        ndimage.gaussian_filter(q[k], sigma=sigma, output=out[k], mode="constant", cval=0.0, truncate=4.0)
        out[k] *= scale
    out -= q  # the voxel's own term (exp(0) = 1) is not a pair
    return out


class _BilateralGrid:
    """Splat, blur and slice on a coarse (x, y, z, HU) grid; built once per scan, used every iteration.

    Voxels are visited in chunks of :attr:`CHUNK` (their grid coordinates recomputed per chunk), so the
    per-voxel bookkeeping (16 corners: index and weight) costs a chunk's memory, not the box's."""

    _MAX_CELLS = 20_000_000  # 80 MB of float32: above it, 2 cells per sigma instead of 3 (about 2% less exact)
    CHUNK = 1 << 20  # voxels per chunk: ~200 MB of corner indices and weights

    def __init__(self, image_hu: np.ndarray, spacing_mm: Sequence[float], theta_mm: float, theta_hu: float):
        shape = image_hu.shape
        extent = [n * s / theta_mm for n, s in zip(shape, spacing_mm)] + [float(np.ptp(image_hu)) / theta_hu]
        cells = 3.0 if math.prod(e * 3.0 + 2 for e in extent) <= self._MAX_CELLS else 2.0  # cells per sigma
        cell_mm, cell_hu = theta_mm / cells, theta_hu / cells
        self.shape = shape
        self.factors = [np.float32(s / cell_mm) for s in spacing_mm]  # grid cells per voxel, per axis
        self.image = np.asarray(image_hu, dtype=np.float32).ravel()
        self.hu_min, self.cell_hu = float(self.image.min()), cell_hu
        top = [np.float32(n - 1) * f for n, f in zip(shape, self.factors)]
        top.append((np.float32(self.image.max()) - np.float32(self.hu_min)) / np.float32(cell_hu))
        self.grid_shape = tuple(int(np.floor(t)) + 2 for t in top)
        # linear splatting and slicing each widen the kernel by a tent's variance (1/6 cell^2): the blur
        # makes up the rest, so the end-to-end kernel is the Gaussian of theta (``cells`` cells)
        self.sigma = math.sqrt(cells**2 - 2.0 / 6.0)
        # its unnormalised form: the normalised 4D Gaussian of ``cells`` cells times its integral
        self.scale = (math.sqrt(2.0 * math.pi) * cells) ** 4
        radius = int(4.0 * self.sigma + 0.5)
        kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / self.sigma) ** 2)
        self.g0, self.g1 = kernel[radius] / kernel.sum(), kernel[radius + 1] / kernel.sum()

    def _chunk(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxels ``start:stop`` (flat): the flat grid index and linear weight of each of their 16 cell corners,
        ``(16 * n,)`` each, corner-major, and each voxel's weight on itself through splat, blur and slice."""
        positions = np.unravel_index(np.arange(start, stop), self.shape)
        coords = np.stack([*(p.astype(np.float32) * f for p, f in zip(positions, self.factors)),
                           (self.image[start:stop] - np.float32(self.hu_min)) / np.float32(self.cell_hu)])
        base = np.floor(coords).astype(np.int64)  # (4, n) lower grid corner of each voxel
        frac = (coords - base).astype(np.float32)  # (4, n) its position within the cell
        index = np.empty((16, stop - start), np.int64)
        weight = np.ones((16, stop - start), np.float32)
        for corner in range(16):
            bits = [(corner >> a) & 1 for a in range(4)]
            index[corner] = np.ravel_multi_index(tuple(base[a] + bits[a] for a in range(4)), self.grid_shape)
            for a in range(4):
                weight[corner] *= frac[a] if bits[a] else (1.0 - frac[a])
        # per axis, a voxel's two corners paired through the blur (same corner: g0, neighbouring corners: g1)
        f = frac.astype(np.float64)
        self_weight = np.prod((f**2 + (1 - f) ** 2) * self.g0 + 2 * f * (1 - f) * self.g1, axis=0)
        return index.ravel(), weight.ravel(), self_weight

    def sums(self, q: np.ndarray) -> np.ndarray:
        """``sum_{j != i} exp(-d_ij^2/2theta^2 - dI^2/2theta_hu^2) q_j`` per class (grid approximation).

        Splats every class chunk by chunk (each chunk's corners computed once per call, not once per class),
        blurs each class's grid, slices them back the same way."""
        values = q.reshape(q.shape[0], -1)
        n, size = values.shape[1], int(np.prod(self.grid_shape))
        grids = np.zeros((q.shape[0], size), np.float32)
        for start in range(0, n, self.CHUNK):
            index, weight, _ = self._chunk(start, min(n, start + self.CHUNK))
            for k in range(q.shape[0]):
                grids[k] += np.bincount(index, weights=np.tile(values[k, start : start + self.CHUNK], 16) * weight,
                                        minlength=size)  # fmt: skip
        blurred = [ndimage.gaussian_filter(g.reshape(self.grid_shape), sigma=self.sigma,
                                           mode="constant", cval=0.0, truncate=4.0).ravel() for g in grids]  # fmt: skip
        del grids
        out = np.empty(values.shape, q.dtype)
        for start in range(0, n, self.CHUNK):
            stop = min(n, start + self.CHUNK)
            index, weight, self_weight = self._chunk(start, stop)
            for k in range(q.shape[0]):
                sliced = (blurred[k][index] * weight).reshape(16, stop - start).sum(axis=0, dtype=np.float64)
                # the grid also spreads each voxel's own value over its neighbours: remove it in proportion
                out[k, start:stop] = (sliced - self_weight * values[k, start:stop]) * self.scale
        return out.reshape(q.shape)


def dense_crf(probabilities: np.ndarray, image_hu: np.ndarray, *, spacing_mm: Sequence[float],
              settings: CrfSettings = CrfSettings()) -> np.ndarray:
    """Mean-field inference of the dense CRF (see the module docstring) on one volume.

    Args:
        probabilities: ``(K, X, Y, Z)`` class probabilities (summing to 1 over ``K``).
        image_hu: ``(X, Y, Z)`` the scan in HU, same grid.
        spacing_mm: Voxel size along each axis, in mm.
        settings: The CRF's parameters.

    Returns:
        ``(K, X, Y, Z)`` float32 refined probabilities ``Q``.
    """
    p = np.asarray(probabilities, dtype=np.float32)
    if p.ndim != 4 or p.shape[1:] != np.shape(image_hu):
        raise ValueError(f"probabilities (K, X, Y, Z) {p.shape} must match the image {np.shape(image_hu)}")
    unary = -np.log(np.clip(p, _EPS, 1.0))
    clipped = np.clip(np.asarray(image_hu, dtype=np.float32), *settings.hu_range)
    grid = (_BilateralGrid(clipped, spacing_mm, settings.appearance_mm, settings.appearance_hu)
            if settings.appearance_weight > 0 else None)  # fmt: skip
    q = _softmax(-unary)
    for _ in range(settings.iterations):  # in place where it can: each (K, X, Y, Z) array is the box's size
        message = _smoothness_sums(q, spacing_mm, settings.smoothness_mm)
        message *= settings.smoothness_weight
        if grid is not None:
            appearance = grid.sums(q)
            appearance *= settings.appearance_weight
            message += appearance
            del appearance
        del q
        # Potts: a label pays for the neighbours' mass on every other label: scores -unary - (sum - message)
        message -= message.sum(axis=0, keepdims=True)
        message -= unary
        q = _softmax_inplace(message)
    return q.astype(np.float32, copy=False)


def refine_labels(labels: np.ndarray, probabilities: np.ndarray | Callable[[tuple[slice, ...]], np.ndarray],
                  image_hu: np.ndarray, *, spacing_mm: Sequence[float], settings: CrfSettings = CrfSettings()
                  ) -> np.ndarray:
    """The label map after the dense CRF, run inside the predicted liver's box plus ``settings.margin_mm``
    (outside it the labels are kept): ``(X, Y, Z)`` uint8. No liver predicted: the labels as they are.

    ``probabilities``: ``(K, X, Y, Z)``, or a function of the box (three slices) returning ``(K, *box shape)``
    so that a large scan's probabilities are only ever made inside the box
    (:func:`medseg.inference.restore.restore_probabilities_in_box`)."""
    from medseg.boxes import bounding_box

    margin = [math.ceil(settings.margin_mm / s) for s in spacing_mm]
    box = bounding_box(np.asarray(labels) > 0, margin=margin)
    if box is None:
        return np.asarray(labels, dtype=np.uint8)
    inside = probabilities(box) if callable(probabilities) else np.asarray(probabilities)[(slice(None), *box)]
    refined = dense_crf(inside, np.asarray(image_hu)[box], spacing_mm=spacing_mm, settings=settings)
    out = np.array(labels, dtype=np.uint8)
    out[box] = refined.argmax(axis=0).astype(np.uint8)
    return out


def pairwise_sums_bruteforce(q: np.ndarray, image_hu: np.ndarray, *, spacing_mm: Sequence[float],
                             theta_mm: float, theta_hu: float | None) -> np.ndarray:
    """``sum_{j != i} k(i, j) q_j`` over every pair, written out (``theta_hu=None``: the smoothness kernel).
    For tests and small volumes only: ``O(N^2)`` memory and time."""
    positions = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(image_hu.shape, spacing_mm)],
                                     indexing="ij")).reshape(3, -1).T  # fmt: skip
    d2 = ((positions[:, None, :] - positions[None, :, :]) ** 2).sum(-1)
    exponent = -d2 / (2 * theta_mm**2)
    if theta_hu is not None:
        intensity = np.asarray(image_hu, dtype=np.float64).ravel()
        exponent = exponent - (intensity[:, None] - intensity[None, :]) ** 2 / (2 * theta_hu**2)
    kernel = np.exp(exponent)
    np.fill_diagonal(kernel, 0.0)
    flat = q.reshape(q.shape[0], -1).astype(np.float64)
    return (flat @ kernel.T).reshape(q.shape)


def _softmax_inplace(scores: np.ndarray) -> np.ndarray:
    """:func:`_softmax` over axis 0, overwriting ``scores`` (returned)."""
    scores -= scores.max(axis=0, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=0, keepdims=True)
    return scores


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=0, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=0, keepdims=True)
