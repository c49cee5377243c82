"""Sliding-window inference over a whole preprocessed scan, with Gaussian blending and window skipping.

Why our own loop and not :func:`monai.inferers.sliding_window_inference`: MONAI's function always runs
every window of the dense grid and always accumulates over the whole input. Inference here needs three
things it lacks: skipping windows that hold only air (a body mask decides), running only inside a box
(coarse-to-fine: the liver's bounding box), and 2.5D models that read ``2k + 1`` neighbouring axial slices
as channels while writing one slice. Everything that MONAI does well is reused: window placement
(:func:`monai.data.utils.dense_patch_slices`, the same scan interval ``int(roi * (1 - overlap))``) and the
Gaussian importance map (:func:`monai.data.utils.compute_importance_map`, sigma = 1/8 of the window, as
in nnU-Net, Isensee et al. 2021, *Nature Methods* 18:203). With no mask and no box, the result equals
MONAI's ``sliding_window_inference(mode="gaussian")`` (tested).

How the windows run is one frozen :class:`WindowSettings`; :func:`predict_logits` is four named steps:
pad the image to one window, place the windows, run and blend them, crop the padding off.

Memory: one ``float32`` logit buffer ``(K, X, Y, Z)`` and one ``float32`` weight buffer on the (padded)
preprocessed grid, turned into the logits in place; windows are evaluated ``batch_size`` at a time. A box
that grows (:class:`WindowBlend`) keeps only these running sums, never the outputs of single windows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from medseg.boxes import grow_to_window

__all__ = ["BACKGROUND_FILL_LOGIT", "BOX_WINDOWS", "LAYOUTS", "MAX_OVERLAP", "WindowBlend", "WindowSettings",
           "grid_windows_for_box", "plan_windows", "predict_logits"]

logger = logging.getLogger(__name__)

#: Largest window overlap: a step of a quarter window, 4^3 = 64 windows per window volume, 8x the default 0.5.
#: More adds nothing to the Gaussian-blended result and grows as ``1 / (1 - overlap)^3`` (0.99: ~10^6 times
#: the windows of no overlap, a hang).
MAX_OVERLAP = 0.75

#: Logit given to the foreground classes where no window ran (background logit 0): a confident background.
BACKGROUND_FILL_LOGIT = -20.0

#: How the windows of a run restricted to a box are placed (see :class:`WindowSettings`).
BOX_WINDOWS = ("centred", "reach", "tile")

#: Window placement and weighting rules (see :class:`WindowSettings`).
LAYOUTS = ("monai", "nnunet")

Box = tuple[slice, slice, slice]
Network = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class WindowSettings:
    """How :func:`predict_logits` runs its windows.

    Attributes:
        patch_size: 3D model: ``(wx, wy, wz)``. 2D model: ``(wx, wy)``, applied to each axial slice.
        num_classes: ``K``, the number of output channels.
        overlap: Fraction of overlap between neighbouring windows, in ``[0, 1)`` (0.5 as nnU-Net).
        batch_size: Windows per forward pass.
        context_slices: 2D models only: ``k`` neighbouring slices each side given as channels
            (``C_in * (2k + 1)`` network inputs; edge slices repeated at the scan's ends).
        box_windows: With a ``box``: ``"reach"`` (the windows of the whole-image grid that reach into the
            box: inside it, exactly a run without ``box``), ``"centred"`` (the windows of the whole-image
            grid whose centre lies in the box, plus the one each side that completes its cover: about
            half of those reaching into it, and exactly a run without ``box`` wherever a voxel's windows
            all have their centre in the box; nearer the box's faces only the low-weight rims of the
            windows centred outside it are missing) or ``"tile"`` (a window grid laid over the box itself, grown
            to one window where needed: windows sit elsewhere than in a whole-scan run).
        device: Where the network runs and the buffers live.
        amp: Use float16 autocast (CUDA only; ignored on CPU).
        cpu_bfloat16: Use bfloat16 autocast on CPU (:mod:`medseg.inference.cpu`; ignored on CUDA).
        sigma_scale: Gaussian sigma as a fraction of the window size.
        layout: Window placement and Gaussian weights: ``"monai"`` (medseg's own runs) or ``"nnunet"``
            (nnU-Net's evenly spread steps and ``scipy`` Gaussian, for imported nnU-Net models:
            :mod:`medseg.interop.nnunet.windows`).
        progress: Show a tqdm bar over window batches.
    """

    patch_size: tuple[int, ...]
    num_classes: int
    overlap: float = 0.5
    batch_size: int = 2
    context_slices: int = 0
    box_windows: str = "reach"
    device: str | torch.device = "cpu"
    amp: bool = False
    cpu_bfloat16: bool = False
    sigma_scale: float = 0.125
    progress: bool = False
    layout: str = "monai"

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        if len(self.patch_size) not in (2, 3):
            raise ValueError(f"patch_size must have 2 or 3 entries, got {self.patch_size}")
        if len(self.patch_size) == 3 and self.context_slices:
            raise ValueError("context_slices applies to 2D models only")
        if not 0.0 <= self.overlap <= MAX_OVERLAP:
            raise ValueError(f"overlap must be in [0, {MAX_OVERLAP}], got {self.overlap}")
        if self.box_windows not in BOX_WINDOWS:
            raise ValueError(f"box_windows must be one of {BOX_WINDOWS}, got {self.box_windows!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")

    @property
    def window(self) -> tuple[int, int, int]:
        """The window on the ``(X, Y, Z)`` grid (a 2D model's window is one slice thick)."""
        return (*self.patch_size, 1) if len(self.patch_size) == 2 else self.patch_size


def _scan_interval(image_size: Sequence[int], window: Sequence[int], overlap: float) -> tuple[int, ...]:
    """MONAI's scan interval: ``int(window * (1 - overlap))`` (at least 1), whole axis when it fits exactly."""
    return tuple(
        w if w == s else max(1, int(w * (1.0 - overlap))) for s, w in zip(image_size, window)
    )


def plan_windows(
    image_size: Sequence[int],
    window: Sequence[int],
    *,
    overlap: float,
    mask: np.ndarray | torch.Tensor | None = None,
    layout: str = "monai",
) -> tuple[list[Box], int]:
    """Window positions of a dense sliding window, minus those that hold no ``mask`` voxel.

    Args:
        image_size: Spatial size ``(X, Y, Z)`` of the (padded) image; each >= ``window``.
        window: Window size ``(wx, wy, wz)``.
        overlap: Fraction of a window shared with its neighbour along each axis, in ``[0, 1)``.
        mask: Optional ``(X, Y, Z)`` boolean; windows containing no True voxel are dropped.
        layout: ``"monai"`` or ``"nnunet"`` placement (:class:`WindowSettings`).

    Returns:
        The kept windows (tuples of slices) and the number of windows of the dense grid.
    """
    if not 0.0 <= overlap <= MAX_OVERLAP:
        raise ValueError(f"overlap must be in [0, {MAX_OVERLAP}], got {overlap}")
    if layout == "nnunet":
        from medseg.interop.nnunet.windows import nnunet_window_slices

        slices = nnunet_window_slices(image_size, window, 1.0 - overlap)
    else:
        from monai.data.utils import dense_patch_slices  # imported here: MONAI's import takes ~6 s

        slices = dense_patch_slices(tuple(image_size), tuple(window), _scan_interval(image_size, window, overlap))
    total = len(slices)
    if mask is not None:
        slices = [s for s in slices if bool(mask[s].any())]
    return [tuple(s) for s in slices], total


@torch.inference_mode()
def predict_logits(
    network: Network,
    image: torch.Tensor | np.ndarray,
    settings: WindowSettings,
    *,
    mask: np.ndarray | torch.Tensor | None = None,
    box: Box | None = None,
) -> torch.Tensor:
    """Gaussian-blended sliding-window logits of ``network`` over a whole image.

    Args:
        network: Maps a batch ``(B, C_in, *patch)`` to logits ``(B, K, *patch)`` (a module in ``eval()``
            mode or a test-time-augmentation wrapper); a list/tuple output (deep supervision) uses item 0.
        image: ``(C_in, X, Y, Z)`` preprocessed image on the canonical grid (CPU tensor or array).
        settings: Window size, overlap, batching, device (:class:`WindowSettings`).
        mask: ``(X, Y, Z)`` boolean (e.g. the body); windows without a True voxel are skipped.
        box: Run only for this box (slices on ``X, Y, Z``), with the windows ``settings.box_windows``
            chooses; outside it the result is background.

    Returns:
        ``(K, X, Y, Z)`` float32 logits on the CPU. Voxels that no window covered (skipped or outside
        ``box``) get background: logit 0 for class 0 and :data:`BACKGROUND_FILL_LOGIT` for the others.
    """
    blend = WindowBlend(image, settings, mask=mask)
    blend.run(network, box=box)
    return blend.logits()


class WindowBlend:
    """Running sums of one image's Gaussian-weighted window outputs, for runs in a box that grows.

    :func:`predict_logits` is one :meth:`run` and :meth:`logits`. Coarse-to-fine prediction calls
    :meth:`run` again with a grown box: only the windows not run before run, and the sums keep every
    window run so far (the windows of all the boxes, never one twice). The sums are the blend itself, so
    nothing else is kept: no window outputs, whatever the number of runs.

    Args:
        image: ``(C_in, X, Y, Z)`` preprocessed image (CPU tensor or array).
        settings: :class:`WindowSettings`.
        mask: ``(X, Y, Z)`` boolean (e.g. the body); windows without a True voxel are skipped.

    Memory: ``K + 1`` float32 maps on the padded grid (the sums and the weights) on ``settings.device``,
    plus the image there.
    """

    def __init__(self, image: torch.Tensor | np.ndarray, settings: WindowSettings, *,
                 mask: np.ndarray | torch.Tensor | None = None) -> None:
        image = torch.as_tensor(image)
        if image.ndim != 4:
            raise ValueError(f"image must be (C, X, Y, Z), got shape {tuple(image.shape)}")
        self.settings = settings
        self.shape = tuple(image.shape[1:])
        self._device = torch.device(settings.device)
        image, self._mask, _, self._pads = _pad_to_window(image, mask, None, settings.window)
        self._image = image.to(device=self._device, dtype=torch.float32)
        self._padded = tuple(image.shape[1:])
        self._sums = torch.zeros((settings.num_classes, *self._padded), dtype=torch.float32, device=self._device)
        self._weights = torch.zeros(self._padded, dtype=torch.float32, device=self._device)
        weight_map = _importance_map(settings, self._device)
        self._weight_map = weight_map[..., None] if len(settings.patch_size) == 2 else weight_map
        self._done: set[tuple[tuple[int, int], ...]] = set()
        self._box: Box | None = None  # the padded box of the last run (None: the whole image)
        self._finished = False

    @property
    def windows_run(self) -> int:
        """Windows run so far, over all calls of :meth:`run`."""
        return len(self._done)

    @torch.inference_mode()
    def run(self, network: Network, *, box: Box | None = None) -> int:
        """Run the windows for ``box`` (see :func:`predict_logits`) that no earlier call ran; returns
        how many ran. Later results are background outside this call's box."""
        if self._finished:
            raise RuntimeError("WindowBlend.run after logits(): the sums were turned into logits")
        if box is not None:
            box = tuple(slice(*s.indices(n)[:2]) for s, n in zip(box, self.shape))
            box = tuple(slice(s.start + p // 2, s.stop + p // 2) for s, p in zip(box, self._pads))
        windows, self._box = _place_windows(self._padded, self.settings, self._mask, box)
        todo = [w for w in windows if _key(w) not in self._done]
        batches = range(0, len(todo), self.settings.batch_size)
        for start in tqdm(batches, desc="windows", unit="batch", disable=not self.settings.progress, leave=False):
            group = todo[start : start + self.settings.batch_size]
            out = _forward(network, _gather(self._image, group, self.settings), self.settings, self._device)
            for sl, pred in zip(group, out):
                self._sums[(slice(None), *sl)] += pred * self._weight_map
                self._weights[sl] += self._weight_map
        self._done.update(_key(w) for w in todo)
        return len(todo)

    def foreground(self) -> np.ndarray:
        """``(X, Y, Z)`` boolean on the CPU: where the blended argmax is a foreground class, inside the
        last run's box (the sums' argmax: dividing by the positive weights changes no argmax; a tie is
        background, as :func:`torch.argmax` gives the first)."""
        sums = self._sums[(slice(None), *self._inside())]
        found = sums[1:].amax(dim=0) > sums[0]
        outside = self._outside_box()
        if outside is not None:
            found &= ~outside[self._inside()]
        return found.cpu().numpy()

    def logits(self) -> torch.Tensor:
        """``(K, X, Y, Z)`` float32 logits on the CPU (as :func:`predict_logits` returns them); turns the
        sums into them in place, so no :meth:`run` may follow."""
        self._finished = True
        covered = self._weights > 0
        self._weights[~covered] = 1.0
        self._sums.div_(self._weights)
        self._weights = None
        _fill_background(self._sums, ~covered)
        del covered
        outside = self._outside_box()
        if outside is not None:
            _fill_background(self._sums, outside)
        logits, self._sums = self._sums, None
        return _crop(logits, self._pads, self.shape)

    def _outside_box(self) -> torch.Tensor | None:
        """The padded grid outside the last run's box (boolean; ``None`` when it ran on the whole image)."""
        if self._box is None:
            return None
        outside = torch.ones(self._padded, dtype=torch.bool, device=self._device)
        outside[self._box] = False
        return outside

    def _inside(self) -> Box:
        """The unpadded image within the padded grid."""
        return tuple(slice(p // 2, p // 2 + s) for p, s in zip(self._pads, self.shape))


def _importance_map(settings: WindowSettings, device: torch.device) -> torch.Tensor:
    """The Gaussian weight of one window (``settings.layout``'s)."""
    if settings.layout == "nnunet":
        from medseg.interop.nnunet.windows import nnunet_gaussian

        return nnunet_gaussian(settings.patch_size, sigma_scale=settings.sigma_scale, device=device)
    from monai.data.utils import compute_importance_map

    return compute_importance_map(settings.patch_size, mode="gaussian", sigma_scale=settings.sigma_scale, device=device)


def _pad_to_window(image: torch.Tensor, mask, box: Box | None, window: Sequence[int]):
    """Pad (only where the image is smaller than a window) with the image minimum (air, not tissue),
    half before and half after; ``mask`` and ``box`` follow. Returns them with the pads per axis."""
    pads = [max(0, w - s) for w, s in zip(window, image.shape[1:])]
    if not any(pads):
        return image, mask, box, pads
    pad_arg = []
    for p in reversed(pads):
        pad_arg += [p // 2, p - p // 2]
    image = F.pad(image[None].float(), pad_arg, value=float(image.min()))[0]
    if mask is not None:
        mask = F.pad(torch.as_tensor(mask)[None, None].float(), pad_arg)[0, 0] > 0
    if box is not None:
        box = tuple(slice(s.start + p // 2, s.stop + p // 2) for s, p in zip(box, pads))
    return image, mask, box, pads


def _place_windows(padded: Sequence[int], settings: WindowSettings, mask, box: Box | None
                   ) -> tuple[list[Box], Box | None]:
    """The windows that run (the whole-image grid minus air, restricted to ``box`` as ``box_windows``
    says) and the box they fill (``"tile"``: grown to at least one window)."""
    window, overlap = settings.window, settings.overlap
    if box is not None and settings.box_windows == "tile":  # a window grid laid over the box alone
        box = grow_to_window(box, padded, window)
        sub_mask = None if mask is None else torch.as_tensor(mask)[box]
        local, total = plan_windows([b.stop - b.start for b in box], window, overlap=overlap, mask=sub_mask,
                                    layout=settings.layout)
        windows = [tuple(slice(s.start + b.start, s.stop + b.start) for s, b in zip(w, box)) for w in local]
    else:
        windows, total = plan_windows(padded, window, overlap=overlap, mask=mask, layout=settings.layout)
        if box is not None:
            windows = grid_windows_for_box(windows, box, window, placement=settings.box_windows)
    logger.debug("sliding window: %d of %d windows", len(windows), total)
    return windows, box


def grid_windows_for_box(windows: list[Box], box: Box, window: Sequence[int], *, placement: str) -> list[Box]:
    """The windows of a whole-image grid (:func:`plan_windows`) that a run restricted to ``box`` runs:
    ``placement="reach"``, every window reaching into the box; ``"centred"``, those whose centre lies in
    it and the nearest one each side that completes its cover (see :class:`WindowSettings`)."""
    if placement == "reach":  # inside the box: as a full run
        return [w for w in windows if all(a.start < b.stop and a.stop > b.start for a, b in zip(w, box))]
    if placement != "centred":
        raise ValueError(f"placement must be 'reach' or 'centred', got {placement!r}")
    starts = [_centred_starts({w[a].start for w in windows}, box[a], window[a]) for a in range(3)]
    return [w for w in windows if all(w[a].start in starts[a] for a in range(3))]


def _centred_starts(grid: set[int], span: slice, size: int) -> set[int]:
    """Window starts along one axis, out of ``grid``: those whose window centre lies in ``span``, and the
    nearest start each side that the cover of ``span`` still needs (consecutive starts are at most a
    window apart, so the result covers ``span``)."""
    ordered = sorted(grid)
    kept = {s for s in ordered if span.start <= s + size / 2 < span.stop}
    below = [s for s in ordered if s <= span.start]
    above = [s for s in ordered if s + size >= span.stop]
    if below and (not kept or min(kept) > span.start):
        kept.add(below[-1])
    if above and (not kept or max(kept) + size < span.stop):
        kept.add(above[0])
    return kept


def _key(window: Box) -> tuple[tuple[int, int], ...]:
    """A window as a hashable key (slices are not hashable before Python 3.12)."""
    return tuple((s.start, s.stop) for s in window)


def _gather(src: torch.Tensor, group: list[Box], settings: WindowSettings) -> torch.Tensor:
    """The network inputs of a group of windows: ``(B, C_in, *patch)``; 2D windows with their ``2k + 1``
    context slices as channels (edge slices repeated)."""
    if len(settings.patch_size) == 3:
        return torch.stack([src[(slice(None), *sl)] for sl in group])
    k, n_z = settings.context_slices, src.shape[-1]
    inputs = []
    for sl in group:
        z = sl[2].start
        zi = torch.arange(z - k, z + k + 1, device=src.device).clamp_(0, n_z - 1)
        patch = src[:, sl[0], sl[1]][..., zi]  # (C, wx, wy, 2k+1)
        inputs.append(patch.movedim(-1, 1).reshape(-1, *patch.shape[1:3]))
    return torch.stack(inputs)


def _forward(network: Network, batch: torch.Tensor, settings: WindowSettings, device: torch.device) -> torch.Tensor:
    """float32 logits ``(B, K, *window)`` of one batch (item 0 of a deep-supervision list; 2D outputs get a
    trailing slice axis)."""
    if device.type == "cpu":
        autocast, dtype = settings.cpu_bfloat16, torch.bfloat16
    else:
        autocast, dtype = settings.amp and device.type == "cuda", torch.float16
    with torch.autocast(device_type=device.type, dtype=dtype, enabled=autocast):
        out = network(batch)
    if isinstance(out, list | tuple):
        out = out[0]
    out = out.float()
    if out.shape[1] != settings.num_classes:
        raise ValueError(f"network returned {out.shape[1]} channels, expected num_classes={settings.num_classes}")
    return out[..., None] if len(settings.patch_size) == 2 else out


def _crop(logits: torch.Tensor, pads: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
    """Undo the padding of :func:`predict_logits` and return a contiguous CPU tensor."""
    if any(pads):
        logits = logits[(slice(None), *(slice(p // 2, p // 2 + s) for p, s in zip(pads, shape)))]
    return logits.cpu().contiguous() if logits.device.type != "cpu" else logits.contiguous()


def _fill_background(logits: torch.Tensor, where: torch.Tensor) -> None:
    """Set ``logits`` (K, ...) to confident background where ``where`` (...) is True, in place."""
    if not bool(where.any()):
        return
    for k in range(logits.shape[0]):
        logits[k][where] = 0.0 if k == 0 else BACKGROUND_FILL_LOGIT
