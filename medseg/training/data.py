"""The training patch loader: memory-mapped cases -> sampled, augmented patches -> batches.

Every sample is a pure function of ``(seed, global sample index)``: the sampler hands out consecutive
global indices (epoch ``e`` gets ``e * N ... (e + 1) * N - 1``), and each index seeds its own generator, so
the batches are identical for any number of worker processes and a resumed run can replay an epoch
(:meth:`EpochSampler.set_epoch`). Cases are opened with ``np.load(mmap_mode="r")`` inside each worker and
only the patch region is read, so the data set never has to fit in memory.

Patches (shapes without the batch axis):

* 3D: image ``(1, X, Y, Z)``, label ``(1, X, Y, Z)`` on the preprocessed canonical grid.
* 2D / 2.5D: an axial slice ``(C, X, Y)`` with ``C = 2k + 1`` (slices ``z - k ... z + k`` as channels,
  ``k = context_slices``) and the centre slice's label ``(1, X, Y)``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from medseg.errors import ConfigError, DataError
from medseg.training.augment import AugmentationConfig, Augmenter, affine_margin
from medseg.training.binder import bind
from medseg.training.sampling import centered_start, crop_patch, foreground_count, pick_foreground_voxel, random_start

__all__ = ["EpochSampler", "PatchDataset", "PatchSettings", "make_loader", "save_batch_preview"]

logger = logging.getLogger(__name__)


class EpochSampler(Sampler[int]):
    """Yields the global sample indices of one epoch, then moves on to the next epoch.

    Args:
        samples_per_epoch: ``iterations_per_epoch * batch_size``.
        epoch: First epoch to yield.
    """

    def __init__(self, samples_per_epoch: int, epoch: int = 0):
        self.samples_per_epoch = int(samples_per_epoch)
        self.epoch = int(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration yield epoch ``epoch`` (to resume a run)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        start = self.epoch * self.samples_per_epoch
        self.epoch += 1
        return iter(range(start, start + self.samples_per_epoch))

    def __len__(self) -> int:
        return self.samples_per_epoch


@dataclass(frozen=True)
class PatchSettings:
    """What the training patches are: their size, the batch, sampling, augmentation and loss maps.

    Attributes:
        patch_size: ``(X, Y, Z)`` for 3D, ``(X, Y)`` for 2D; padded where the case is smaller.
        batch_size: Patches per batch (B).
        spatial_dims: 3 for volumetric patches, 2 for axial slices.
        context_slices: 2D only: k neighbouring slices each side as extra channels (C = 2k + 1).
        foreground_fraction: Expected share of each batch centred on a foreground voxel (nnU-Net: 1/3).
        augment: An :class:`AugmentationConfig` (a mapping of its fields is converted; ``{}``: nnU-Net's
            defaults) or ``None`` for no augmentation (also when ``enabled`` is false).
        maps: Names of loss maps computed per sample after augmentation with
            :func:`medseg.losses.compute_maps` (e.g. ``{"weight_map"}``), added to the batch.
        map_options: Per-map keyword arguments for ``compute_maps``.
        num_classes: Number of classes C (for the maps).
        spacing_mm: Spacing of the preprocessed grid ``(X, Y, Z)``; ``None`` uses each case's own spacing
            from the cache (recommended).
        seed: Seed of the sample stream; batches do not depend on the number of workers.
        ignore_label: Value of unannotated voxels: never a foreground centre; the maps come from the
            annotated voxels (:func:`medseg.losses.compute_maps`).

    Raises:
        ConfigError: A value out of range, naming the field.
    """

    patch_size: tuple[int, ...]
    batch_size: int
    spatial_dims: int = 3
    context_slices: int = 0
    foreground_fraction: float = 1 / 3
    augment: AugmentationConfig | Mapping[str, Any] | None = None
    maps: frozenset[str] = frozenset()
    map_options: Mapping[str, Mapping] = field(default_factory=dict)
    num_classes: int = 3
    spacing_mm: tuple[float, ...] | None = None
    seed: int = 0
    ignore_label: int | None = None

    def __post_init__(self) -> None:
        if self.spatial_dims not in (2, 3):
            raise ConfigError(f"spatial_dims must be 2 or 3, got {self.spatial_dims!r}")
        patch = tuple(int(p) for p in self.patch_size)
        if len(patch) != self.spatial_dims or min(patch) < 1:
            raise ConfigError(f"patch_size must have {self.spatial_dims} positive entries, got {list(self.patch_size)}")
        if self.context_slices < 0 or (self.context_slices and self.spatial_dims == 3):
            raise ConfigError(f"context_slices must be >= 0 and is for 2D patches only, got {self.context_slices}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.foreground_fraction <= 1.0:
            raise ConfigError(f"foreground_fraction must be in [0, 1], got {self.foreground_fraction}")
        spacing = None if self.spacing_mm is None else tuple(float(s) for s in self.spacing_mm)
        if spacing is not None and len(spacing) != 3:
            raise ConfigError(f"spacing_mm must have 3 entries (X, Y, Z of the preprocessed grid), "
                              f"got {self.spacing_mm}")
        augment = self.augment
        if augment is not None and not isinstance(augment, AugmentationConfig):
            augment = bind(AugmentationConfig, dict(augment), "augmentation")
        for name, value in (("patch_size", patch), ("spacing_mm", spacing), ("maps", frozenset(self.maps)),
                            ("map_options", dict(self.map_options)),
                            ("augment", augment if augment is not None and augment.enabled else None)):
            object.__setattr__(self, name, value)


class PatchDataset(Dataset):
    """Patches from a preprocessed cache.

    ``dataset[i]`` for any non-negative ``i`` is the ``i``-th sample of the endless, seeded sample
    stream: ``{"image": float32 (C, *patch), "label": int64 (1, *patch), <map>: float32 (...)}``. Sample
    ``i`` sits at position ``i % batch_size`` of its batch; the batch decides how many of its positions
    are foreground-centred.

    Args:
        cache_dir: Output folder of :func:`medseg.preprocessing.preprocess_dataset`.
        case_ids: Training cases (each picked uniformly per sample).
        settings: The patches to make (:class:`PatchSettings`).
    """

    def __init__(self, cache_dir: str | os.PathLike, case_ids: Sequence[str], settings: PatchSettings):
        from medseg.preprocessing.dataset import read_cache_index

        self.cache_dir = str(cache_dir)
        index = read_cache_index(cache_dir)
        self.case_ids = [str(c) for c in case_ids]
        if not self.case_ids:
            raise ConfigError("case_ids is empty: the loader needs at least one training case")
        missing = [c for c in self.case_ids if c not in index["cases"]]
        if missing:
            raise DataError(f"case(s) {missing[:5]} are not in the preprocessed cache", path=cache_dir)
        unlabeled = [c for c in self.case_ids if not index["cases"][c]["has_label"]]
        if unlabeled:
            raise DataError(f"case(s) {unlabeled[:5]} have no label and cannot be used for training", path=cache_dir)
        self.settings = settings
        s = settings
        self.patch_size, self.batch_size, self.spatial_dims = s.patch_size, s.batch_size, s.spatial_dims
        self.context_slices, self.foreground_fraction, self.augment = s.context_slices, s.foreground_fraction, s.augment
        self.maps, self.map_options, self.num_classes = s.maps, s.map_options, s.num_classes
        self.spacing_mm, self.seed = s.spacing_mm, s.seed
        self._cases: dict[str, Any] = {}  # opened lazily, per worker process
        self._augmenter: Augmenter | None = None

    def __len__(self) -> int:
        """Nominal length; any index is valid (the stream is endless)."""
        return len(self.case_ids) * self.batch_size

    # ------------------------------------------------------------------------------------------------
    def _case(self, case_id: str):
        if case_id not in self._cases:
            from medseg.preprocessing.dataset import load_preprocessed

            self._cases[case_id] = load_preprocessed(self.cache_dir, case_id, mmap=True)
        return self._cases[case_id]

    def _region_size(self, margin: float) -> tuple[int, int, int]:
        """``(X, Y, Z)`` of the region to read: the patch (plus the rotation margin, same parity), and for 2D
        the context slices along Z."""
        spatial = [p + 2 * math.ceil(p * (margin - 1.0) / 2) for p in self.patch_size]
        return (*spatial, 1 + 2 * self.context_slices) if self.spatial_dims == 2 else tuple(spatial)

    def _is_foreground(self, index: int) -> bool:
        """Whether sample ``index`` is one of its batch's foreground-centred samples."""
        batch, position = divmod(index, self.batch_size)
        rng = np.random.default_rng([self.seed, batch, 1])
        count = foreground_count(self.batch_size, self.foreground_fraction, rng)
        order = rng.permutation(self.batch_size)
        return bool(position in order[:count])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index)
        rng = np.random.default_rng([self.seed, index, 0])
        case = self._case(self.case_ids[int(rng.integers(len(self.case_ids)))])
        draw = rng.random()  # drawn with or without augmentation, so both see the same patch positions
        do_affine = self.augment is not None and draw < self.augment.affine_prob
        region = self._region_size(affine_margin(self.augment) if do_affine else 1.0)
        picked = (pick_foreground_voxel(case.class_locations, rng, ignore_label=self.settings.ignore_label)
                  if self._is_foreground(index) else None)  # fmt: skip
        if picked is not None:
            start = centered_start(picked[1], region)
        elif self.spatial_dims == 3:
            start = random_start(case.image.shape, region, rng)
        else:  # a random axial slice, a random in-plane position
            z = int(rng.integers(case.image.shape[2]))
            start = np.concatenate([random_start(case.image.shape[:2], region[:2], rng), [z - self.context_slices]])
        image = crop_patch(case.image, start, region, pad_value=case.meta.get("image_min", 0.0))
        label = crop_patch(case.label, start, region, pad_value=0)
        if self.spatial_dims == 2:  # (X, Y, 2k+1) -> channels first; label of the centre slice
            image = np.moveaxis(image, -1, 0)
            label = label[None, :, :, self.context_slices]
        else:
            image, label = image[None], label[None]
        sample = {"image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
                  "label": torch.from_numpy(label.astype(np.int64))}
        if self.augment is not None:
            augmenter = self._get_augmenter(case.spacing_mm)
            if do_affine:
                sample = augmenter.spatial(sample, seed=int(rng.integers(2**31)))
            sample = augmenter.intensity_and_flips(sample, seed=int(rng.integers(2**31)))
            sample["label"] = sample["label"].round().to(torch.int64)
        if self.maps:
            sample.update(self._maps(sample["label"], case.spacing_mm))
        return sample

    def _get_augmenter(self, case_spacing: Sequence[float]) -> Augmenter:
        if self._augmenter is None:
            self._augmenter = Augmenter(self.augment, spatial_dims=self.spatial_dims, patch_size=self.patch_size,
                                        spacing_mm=self.spacing_mm or tuple(case_spacing))
        return self._augmenter

    def _maps(self, label: torch.Tensor, case_spacing: Sequence[float]) -> dict[str, torch.Tensor]:
        from medseg.losses import compute_maps

        spacing = self.spacing_mm or tuple(case_spacing)
        spacing = spacing[: self.spatial_dims]  # 2D patches lie in the X-Y plane
        maps = compute_maps(label.numpy(), sorted(self.maps), num_classes=self.num_classes, spacing_mm=spacing,
                            options=self.map_options, ignore_label=self.settings.ignore_label)
        return {name: torch.as_tensor(np.asarray(value, dtype=np.float32)) for name, value in maps.items()}


def make_loader(
    cache_dir: str | os.PathLike,
    case_ids: Sequence[str],
    patches: PatchSettings,
    *,
    workers: int = 0,
    iterations_per_epoch: int = 250,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader of training batches from a preprocessed cache.

    Args:
        cache_dir: Output folder of :func:`medseg.preprocessing.preprocess_dataset`.
        case_ids: Training cases (each picked uniformly per sample).
        patches: The patches and batches to make (:class:`PatchSettings`).
        workers: Worker processes (0: load in the calling process).
        iterations_per_epoch: Batches per epoch (``len(loader)``).
        pin_memory: Pin batches in page-locked memory (faster copies to a GPU).

    Returns:
        A DataLoader whose batches are ``{"image": float32 (B, C, *patch), "label": int64 (B, 1, *patch),
        <map>: float32 (B, 1|C, *patch)}``; each pass over it is the next epoch (``loader.sampler``
        is an :class:`EpochSampler`).
    """
    if iterations_per_epoch < 1:
        raise ConfigError(f"iterations_per_epoch must be >= 1, got {iterations_per_epoch}")
    dataset = PatchDataset(cache_dir, case_ids, patches)
    workers = max(0, int(workers))
    return DataLoader(
        dataset,
        batch_size=patches.batch_size,
        sampler=EpochSampler(iterations_per_epoch * patches.batch_size),
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init,
        drop_last=True,
    )


def _worker_init(worker_id: int) -> None:
    """One thread per worker: the workers are the parallelism (many threads each would oversubscribe)."""
    torch.set_num_threads(1)


def save_batch_preview(batch: Mapping[str, torch.Tensor], path: str | os.PathLike, *, max_patches: int = 8):
    """Save a PNG of a batch: the middle axial slice of each patch with its label overlaid (liver green,
    tumor red), to check sampling and augmentation by eye. Written atomically; returns the path.

    Args:
        batch: A loader batch (``image`` ``(B, C, X, Y[, Z])``, ``label`` ``(B, 1, X, Y[, Z])``).
        path: Output ``.png``.
        max_patches: Patches shown (the first ones).
    """
    import matplotlib.pyplot as plt

    from medseg.utils.atomic import atomic_path

    image, label = batch["image"].detach().cpu().numpy(), batch["label"].detach().cpu().numpy()
    count = min(int(max_patches), image.shape[0])
    fig, axes = plt.subplots(1, count, figsize=(2.6 * count, 2.8), squeeze=False)
    colours = np.array([[0, 0, 0, 0], [0.1, 0.9, 0.1, 0.35], [1.0, 0.1, 0.1, 0.6]])
    for i, ax in enumerate(axes[0]):
        img, lab = image[i, image.shape[1] // 2], label[i, 0]
        if img.ndim == 3:  # 3D: the middle axial (Z) slice
            img, lab = img[:, :, img.shape[2] // 2], lab[:, :, lab.shape[2] // 2]
        # canonical (R, A) axes -> radiological display: anterior up, patient's right on the viewer's left
        ax.imshow(img.T[::-1, ::-1], cmap="gray")
        ax.imshow(colours[np.clip(lab.T[::-1, ::-1], 0, len(colours) - 1)], interpolation="nearest")
        present = sorted(int(c) for c in np.unique(lab) if c > 0)
        ax.set_title(f"#{i} labels {present}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return path
