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
intensity; it is computed on a **bilateral grid** (Chen, Paris & Durand, "Real-time edge-aware image processing
with the bilateral grid", SIGGRAPH 2007; Paris & Durand, "A fast approximation of the bilateral filter using a
signal processing approach", IJCV 2009): values splatted with multilinear weights onto a coarse
(x, y, z, HU) grid, blurred there by a separable Gaussian, and read back (sliced) by multilinear interpolation.

Choices, measured on a LiTS-size liver box (287 x 214 x 217 voxels of 0.78 x 0.78 x 1 mm, 3 classes, 1 thread):

* **Cell size** ``theta / 3`` per axis where the grid stays under 20 M cells, else ``theta / 2`` (the LiTS box:
  57 x 43 x 56 x 82 cells). Paris & Durand sample at the kernel width itself (one cell per theta); with linear
  splat and slice that is too coarse here: on a 16 x 16 x 12 piece of the box (theta 8 mm / 15 HU) the sums'
  mean / max error against the sum over every pair is 0.5% / 1.9% at 3 cells per theta, 1.1% / 4.6% at 2,
  2.0% / 6.9% at 1.5 and 4.8% / 16% at 1. The blur's width makes up for the tents' widening, so the
  end-to-end kernel is the Gaussian of theta.
* **Splat and slice one x-slice at a time.** The voxels form a regular lattice, so a slice's weights on its two
  x-planes are the same for all its voxels: only the 8 (y, z, HU) corners are scattered per voxel
  (:func:`numpy.add.at`, into one grid plane that stays in the cache; 3-4x faster than :func:`numpy.bincount`
  on the same data), not 16, and the per-voxel bookkeeping kept for the whole call is 4 bytes a voxel
  (its HU in grid cells, float32), not 16 corners' indices and weights.
* **K - 1 classes per iteration.** ``Q`` sums to 1 over the classes and both filters are linear, so the last
  class's sums are the filtered ones (computed once per call) minus the others'.

Together (before: 16 corners recomputed per 2^20-voxel chunk twice an iteration, every class): 5 iterations
on that box take 16-18 s instead of about 240 s, the CRF's own memory is 0.5 GB instead of 1.4 GB, and the
labels are the same; ``benchmarks/bench_crf.py`` (docs/benchmarks.md) has the whole command. A permutohedral
lattice (Adams, Baek & Davis, Eurographics 2010; Krähenbühl's C++ code) scatters to 5 vertices instead of 8
but needs a hash table of lattice points; in NumPy the grid is simpler and accurate to about 1% of the
brute-force sums (tested). Our own code: no maintained Python package computes the 3D dense CRF
(``pydensecrf`` is unmaintained since 2018 and needs a compiler; SimpleCRF last released in 2021).

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


def _smoothness_sums(q: np.ndarray, spacing_mm: Sequence[float], theta_mm: float, out: np.ndarray | None = None
                     ) -> np.ndarray:
    """``sum_{j != i} exp(-|p_i - p_j|^2 / 2 theta^2) q_j`` for each class, exactly (separable, zero outside),
    into ``out`` (a new array if ``None``)."""
    sigma = [theta_mm / s for s in spacing_mm]
    radius = [int(4.0 * s + 0.5) for s in sigma]
    # gaussian_filter normalises its 1D kernels; the unnormalised kernel is their product times the sums
    scale = math.prod(float(np.exp(-0.5 * (np.arange(-r, r + 1) / s) ** 2).sum()) for r, s in zip(radius, sigma))
    out = np.empty_like(q) if out is None else out
    for k in range(q.shape[0]):
        ndimage.gaussian_filter(q[k], sigma=sigma, output=out[k], mode="constant", cval=0.0, truncate=4.0)
        out[k] *= scale
    out -= q  # the voxel's own term (exp(0) = 1) is not a pair
    return out


class _BilateralGrid:
    """Splat, blur and slice on a coarse (x, y, z, HU) grid; built once per scan, used every iteration.

    The splat is the 4D multilinear one (each voxel's value spread over the 16 corners of its grid cell), done
    one x-slice at a time: the voxel positions form a regular lattice, so a slice's weights on the two x-planes
    are the same for all its voxels (two scaled plane additions), and only the 8 (y, z, HU) corners are
    scattered per voxel (:func:`numpy.add.at`, into one plane that stays in the cache). Slicing is the transpose:
    the two x-planes interpolated once per slice, then 8 gathers per voxel. Kept per scan: each voxel's HU in
    grid cells (float32, 4 bytes a voxel; its corner index and fraction follow per slice); the (y, z) weights
    are a ``(4, Y * Z)`` table, the x weights one per slice."""

    _MAX_CELLS = 20_000_000  # 80 MB of float32 per class: above it, 2 cells per sigma instead of 3

    def __init__(self, image_hu: np.ndarray, spacing_mm: Sequence[float], theta_mm: float, theta_hu: float):
        shape = image_hu.shape
        extent = [n * s / theta_mm for n, s in zip(shape, spacing_mm)] + [float(np.ptp(image_hu)) / theta_hu]
        cells = self._cells_per_sigma(extent)
        cell_mm, cell_hu = theta_mm / cells, theta_hu / cells
        factors = [np.float32(s / cell_mm) for s in spacing_mm]  # grid cells per voxel, per axis
        image = np.asarray(image_hu, dtype=np.float32)
        hu_min = np.float32(image.min())
        top = [np.float32(n - 1) * f for n, f in zip(shape, factors)]
        top.append((np.float32(image.max()) - hu_min) / np.float32(cell_hu))
        self.shape, self.grid_shape = shape, tuple(int(np.floor(t)) + 2 for t in top)
        self.cells_per_unit = (*factors, np.float32(1.0 / cell_hu))  # voxel -> cell (x, y, z), HU -> cell
        self.hu_min = hu_min
        # linear splatting and slicing each widen the kernel by a tent's variance (1/6 cell^2): the blur
        # makes up the rest, so the end-to-end kernel is the Gaussian of theta (``cells`` cells)
        self.sigma = math.sqrt(cells**2 - 2.0 / 6.0)
        # its unnormalised form: the normalised 4D Gaussian of ``cells`` cells times its integral
        self.scale = (math.sqrt(2.0 * math.pi) * cells) ** 4
        radius = int(4.0 * self.sigma + 0.5)
        kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / self.sigma) ** 2)
        self.g0, self.g1 = kernel[radius] / kernel.sum(), kernel[radius + 1] / kernel.sum()
        axes = [_lattice(n, f) for n, f in zip(shape, factors)]  # per axis: lower cell, fraction
        self.x_base, self.x_frac = axes[0]
        self.x_self = self._self_weight(self.x_frac)
        self._tables(axes[1], axes[2], (image - hu_min) / np.float32(cell_hu))

    def _cells_per_sigma(self, extent: list[float]) -> float:
        """3 grid cells per kernel width where the grid stays under :attr:`_MAX_CELLS` cells, else 2."""
        return 3.0 if math.prod(e * 3.0 + 2 for e in extent) <= self._MAX_CELLS else 2.0

    def _tables(self, y_axis: tuple, z_axis: tuple, hu_cells: np.ndarray) -> None:
        """The per-voxel and per-(y, z) bookkeeping: corner offsets in a plane, weights, self-weights."""
        _, gy, gz, gh = self.grid_shape
        (by, fy), (bz, fz) = y_axis, z_axis
        self.plane = gy * gz * gh
        self.offsets = np.array([cy * gz * gh + cz * gh + ch for cy in (0, 1) for cz in (0, 1) for ch in (0, 1)],
                                dtype=np.int32)[:, None]  # fmt: skip
        wy, wz = np.stack([1 - fy, fy]), np.stack([1 - fz, fz])
        self.yz_weight = (wy[:, None, :, None] * wz[None, :, None, :]).reshape(4, 1, -1).astype(np.float32)
        self.yz_self = np.outer(self._self_weight(fy), self._self_weight(fz)).ravel()
        self.hu_cells = hu_cells.astype(np.float32, copy=False).reshape(self.shape[0], -1)
        self.yz_base = (by[:, None] * (gz * gh) + bz[None, :] * gh).ravel().astype(np.int32)

    def _self_weight(self, frac: np.ndarray) -> np.ndarray:
        """Per axis, a voxel's weight on itself through splat, blur and slice (its two corners paired through
        the blur: same corner ``g0``, neighbouring corners ``g1``)."""
        f = np.asarray(frac, dtype=np.float64)
        return (f**2 + (1 - f) ** 2) * self.g0 + 2 * f * (1 - f) * self.g1

    def _corners(self, x: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Slice ``x``: the in-plane flat index ``(8 * Y * Z,)`` and weight ``(8, Y * Z)`` of its voxels' 8
        (y, z, HU) corners, ordered as :attr:`offsets`, and their HU fractions ``(Y * Z,)``."""
        lower = np.floor(self.hu_cells[x])
        frac = self.hu_cells[x] - lower
        weight = (self.yz_weight * np.stack([1 - frac, frac])[None]).reshape(8, -1)
        return ((lower.astype(np.int32) + self.yz_base)[None, :] + self.offsets).ravel(), weight, frac

    def sums(self, q: np.ndarray, out: np.ndarray | None = None, factor: float = 1.0) -> np.ndarray:
        """``sum_{j != i} exp(-d_ij^2/2theta^2 - dI^2/2theta_hu^2) q_j`` per class (grid approximation), times
        ``factor``: added to ``out`` (same shape as ``q``) when given, else a new array."""
        values = q.reshape(q.shape[0], self.shape[0], self.shape[1] * self.shape[2])
        grids = np.zeros((q.shape[0], self.grid_shape[0], self.plane), np.float32)
        local = np.empty(self.plane, np.float32)
        for x, (lower, frac) in enumerate(zip(self.x_base, self.x_frac)):
            index, weight, _ = self._corners(x)
            for k in range(q.shape[0]):
                local.fill(0.0)
                np.add.at(local, index, (weight * values[k, x]).ravel())
                grids[k, lower] += local * (1 - frac)
                grids[k, lower + 1] += local * frac
        for k in range(q.shape[0]):  # the blur, class by class (each ndimage pass makes its own output)
            grids[k] = ndimage.gaussian_filter(grids[k].reshape(self.grid_shape), sigma=self.sigma, mode="constant",
                                               cval=0.0, truncate=4.0).reshape(grids.shape[1:])  # fmt: skip
        out = np.zeros(q.shape, q.dtype) if out is None else out
        flat = out.reshape(values.shape)
        for x, (lower, frac) in enumerate(zip(self.x_base, self.x_frac)):
            index, weight, frac_hu = self._corners(x)
            own = self.x_self[x] * self.yz_self * self._self_weight(frac_hu)
            for k in range(q.shape[0]):
                plane = grids[k, lower] * (1 - frac) + grids[k, lower + 1] * frac
                sliced = np.einsum("cv,cv->v", np.take(plane, index).reshape(8, -1), weight)
                # the grid also spreads each voxel's own value over its neighbours: remove it in proportion
                flat[k, x] += (sliced - own * values[k, x]) * (self.scale * factor)
        return out


def _lattice(n: int, cells_per_voxel: np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Voxels ``0..n-1`` of one axis on the grid: each one's lower cell (int) and its fraction within it."""
    coords = np.arange(n, dtype=np.float32) * cells_per_voxel
    lower = np.floor(coords)
    return lower.astype(np.int64), (coords - lower).astype(np.float32)


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
    q = np.clip(p, _EPS, 1.0)
    q /= q.sum(axis=0, keepdims=True)  # the softmax of -unary (the unaries are -log P)
    clipped = np.clip(np.asarray(image_hu, dtype=np.float32), *settings.hu_range)
    grid = (_BilateralGrid(clipped, spacing_mm, settings.appearance_mm, settings.appearance_hu)
            if settings.appearance_weight > 0 else None)  # fmt: skip
    del clipped  # the grid keeps what it needs of it
    # Q sums to 1 over the classes and the filters are linear: the last class's message is the filtered ones
    # (computed once) minus the others'
    total = _messages(np.ones((1, *p.shape[1:]), np.float32), grid, spacing_mm, settings)[0]
    message = np.empty_like(q[:-1])
    for _ in range(settings.iterations):  # in place: Q, the messages and ``total`` are all it holds
        _messages(q[:-1], grid, spacing_mm, settings, out=message)
        q[:-1] = message  # Q is spent: it becomes the scores
        np.subtract(total, message.sum(axis=0), out=q[-1])
        # Potts: a label pays for the neighbours' mass on every other label, -unary - (sum - message); the sum
        # (the same for every label: ``total``) does not change the softmax
        for start in range(0, q.shape[1], 16):  # + log P, a slab at a time (no box-sized temporary)
            q[:, start : start + 16] += np.log(np.clip(p[:, start : start + 16], _EPS, 1.0))
        _softmax_inplace(q)
    return q


def _messages(q: np.ndarray, grid: _BilateralGrid | None, spacing_mm: Sequence[float], settings: CrfSettings,
              out: np.ndarray | None = None) -> np.ndarray:
    """The weighted sums of both kernels, ``(C, X, Y, Z)`` for ``q`` of ``(C, X, Y, Z)``, into ``out``."""
    message = _smoothness_sums(q, spacing_mm, settings.smoothness_mm, out)
    message *= settings.smoothness_weight
    if grid is not None:
        grid.sums(q, out=message, factor=settings.appearance_weight)
    return message


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
    """The softmax over axis 0, overwriting ``scores`` (returned)."""
    scores -= scores.max(axis=0, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=0, keepdims=True)
    return scores
