"""The data-set fingerprint and the preprocessing plan derived from it (nnU-Net's "plan" step).

A fingerprint summarises a training set once: every case's canonical (RAS) spacing and shape, and the CT
intensities inside the foreground (label > 0), sampled from all cases. The plan then fixes what every
case, training or unseen, goes through: the target spacing (median spacing, as nnU-Net) and the intensity
normalisation. Following Isensee et al., "nnU-Net: a self-configuring method for deep learning-based
biomedical image segmentation", Nature Methods 18, 2021 (CT normalisation, median target spacing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from medseg.errors import ConfigError
from medseg.utils.progress import tqdm_disable

__all__ = [
    "DEFAULT_WINDOW_HU",
    "NORMALIZATIONS",
    "PreprocessingPlan",
    "compute_fingerprint",
    "plan_from_fingerprint",
]

NORMALIZATIONS = ("ct_zscore", "window")
DEFAULT_WINDOW_HU = (-150.0, 250.0)  # abdominal soft-tissue window, W400 / L50
_SAMPLES_PER_CASE = 10_000  # foreground voxels sampled per case, as nnU-Net's fingerprint extractor
_PLAN_VERSION = 1


@dataclass(frozen=True)
class PreprocessingPlan:
    """What every case goes through before the network sees it.

    Intensities ``x`` (HU) become ``(clip(x, clip_hu[0], clip_hu[1]) - mean) / std`` for both methods:

    * ``"ct_zscore"`` (nnU-Net's CT normalisation): ``clip_hu`` are the 0.5 / 99.5 percentiles of the
      foreground intensities of the training set, ``mean`` / ``std`` their (unclipped) mean and standard
      deviation; output is roughly zero-mean, unit-variance inside the liver.
    * ``"window"``: a fixed HU window; ``mean`` is its centre and ``std`` its half-width, so the output
      lies in ``[-1, 1]``.

    Attributes:
        target_spacing_mm: Voxel size of the preprocessed canonical (R, A, S) grid, in mm.
        normalization: ``"ct_zscore"`` or ``"window"``.
        clip_hu: ``(low, high)`` clipping bounds in HU.
        mean: Value subtracted after clipping (HU).
        std: Divisor after subtraction (HU), > 0.
    """

    target_spacing_mm: tuple[float, float, float]
    normalization: str = "ct_zscore"
    clip_hu: tuple[float, float] = DEFAULT_WINDOW_HU
    mean: float = 50.0
    std: float = 200.0

    def __post_init__(self) -> None:
        spacing = tuple(float(s) for s in self.target_spacing_mm)
        if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
            raise ConfigError(f"target_spacing_mm must be three positive numbers, got {self.target_spacing_mm!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError(f"normalization must be one of {list(NORMALIZATIONS)}, got {self.normalization!r}")
        clip = tuple(float(c) for c in self.clip_hu)
        if len(clip) != 2 or not clip[0] < clip[1]:
            raise ConfigError(f"clip_hu must be (low, high) with low < high, got {self.clip_hu!r}")
        if not (math.isfinite(self.std) and self.std > 0):
            raise ConfigError(f"std must be a positive number, got {self.std!r}")
        object.__setattr__(self, "target_spacing_mm", spacing)
        object.__setattr__(self, "clip_hu", clip)
        object.__setattr__(self, "mean", float(self.mean))
        object.__setattr__(self, "std", float(self.std))

    @classmethod
    def window(cls, target_spacing_mm: Sequence[float], window_hu: Sequence[float] = DEFAULT_WINDOW_HU):
        """A ``"window"`` plan: clip to ``window_hu`` and scale it to ``[-1, 1]``."""
        low, high = (float(v) for v in window_hu)
        return cls(tuple(target_spacing_mm), "window", (low, high), (low + high) / 2, (high - low) / 2)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (lists, floats, str); inverse of :meth:`from_dict`."""
        out = asdict(self)
        out["target_spacing_mm"] = list(self.target_spacing_mm)
        out["clip_hu"] = list(self.clip_hu)
        out["format_version"] = _PLAN_VERSION
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessingPlan:
        """Rebuild a plan from :meth:`to_dict` output; unknown keys raise :class:`ConfigError`."""
        data = dict(data)
        version = data.pop("format_version", _PLAN_VERSION)
        if version != _PLAN_VERSION:
            raise ConfigError(f"plan format_version {version} is not supported (expected {_PLAN_VERSION})")
        known = {"target_spacing_mm", "normalization", "clip_hu", "mean", "std"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown plan keys {unknown}; expected {sorted(known)}")
        if "target_spacing_mm" not in data:
            raise ConfigError("plan is missing 'target_spacing_mm'")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _case_fingerprint(job: tuple[Any, int, int | None]) -> dict[str, Any]:
    """Canonical spacing/shape and sampled foreground HU of one case (runs in a worker)."""
    from medseg.io import to_canonical
    from medseg.preprocessing.cases import load_case_volumes

    spec, seed, ignore_label = job
    image, label = load_case_volumes(spec)
    canonical, _ = to_canonical(image)
    foreground = np.empty(0)
    if label is not None:
        values = np.asarray(label.array)
        mask = values > 0 if ignore_label is None else (values > 0) & (values != ignore_label)
        foreground = np.asarray(image.array)[mask]
    rng = np.random.default_rng([seed, 12_345])
    if foreground.size > _SAMPLES_PER_CASE:
        foreground = rng.choice(foreground, _SAMPLES_PER_CASE, replace=False)
    return {
        "case_id": spec.case_id,
        "spacing_mm": list(canonical.spacing_mm),
        "shape": list(canonical.shape),
        "foreground": foreground.astype(np.float32),
    }


def compute_fingerprint(
    cases: Sequence[Any],
    *,
    workers: int | None = None,
    progress: bool | None = None,
    seed: int = 0,
    ignore_label: int | None = None,
) -> dict[str, Any]:
    """Summarise a training set: spacings, shapes and foreground intensity statistics.

    Args:
        cases: Cases as accepted by :func:`medseg.preprocessing.cases.as_case_spec` (discovery ``Case``
            objects, ``(case_id, image, label)`` tuples of paths or Volumes, or phantom cases).
        workers: Worker processes (``None``: all cores).
        progress: Show a progress bar (``None``: when stderr is a terminal).
        seed: Seed of the foreground voxel sampling (up to 10,000 voxels per case, as nnU-Net).
        ignore_label: Label value of unannotated voxels (partial annotations): not foreground.

    Returns:
        A JSON-serialisable dict: ``case_ids``, ``spacings_mm`` and ``shapes`` (canonical R, A, S order,
        one per case), ``median_spacing_mm`` and ``foreground`` (``mean``, ``std``, ``min``, ``max``,
        ``median``, ``percentile_00_5``, ``percentile_99_5``, ``samples``) over the sampled voxels.

    Raises:
        DataError: No case has any foreground voxel (labels missing or empty).
    """
    from medseg.errors import DataError
    from medseg.preprocessing.cases import as_case_spec
    from medseg.utils.parallel import map_with_progress

    specs = [as_case_spec(c) for c in cases]
    if not specs:
        raise DataError("compute_fingerprint needs at least one case")
    jobs = [(spec, seed * 1_000_003 + i, ignore_label) for i, spec in enumerate(specs)]
    results = map_with_progress(_case_fingerprint, jobs, workers=workers, desc="fingerprint",
                                disable=tqdm_disable(progress))
    values = np.concatenate([r["foreground"] for r in results]).astype(np.float64)
    if values.size == 0:
        raise DataError("no foreground voxels (label > 0) in any case: cannot compute intensity statistics")
    spacings = np.asarray([r["spacing_mm"] for r in results], dtype=float)
    return {
        "case_ids": [r["case_id"] for r in results],
        "spacings_mm": spacings.tolist(),
        "shapes": [r["shape"] for r in results],
        "median_spacing_mm": np.median(spacings, axis=0).tolist(),
        "foreground": {
            "mean": float(values.mean()),
            "std": float(values.std()),
            "min": float(values.min()),
            "max": float(values.max()),
            "median": float(np.median(values)),
            "percentile_00_5": float(np.percentile(values, 0.5)),
            "percentile_99_5": float(np.percentile(values, 99.5)),
            "samples": int(values.size),
        },
    }


def plan_from_fingerprint(
    fingerprint: Mapping[str, Any],
    *,
    normalization: str = "ct_zscore",
    target_spacing_mm: Sequence[float] | None = None,
    window_hu: Sequence[float] = DEFAULT_WINDOW_HU,
) -> PreprocessingPlan:
    """Derive the preprocessing plan from a fingerprint.

    Args:
        fingerprint: Output of :func:`compute_fingerprint`.
        normalization: ``"ct_zscore"`` (foreground percentiles and z-score, nnU-Net) or ``"window"``.
        target_spacing_mm: Override of the target spacing; default is the median spacing (nnU-Net).
        window_hu: HU window used when ``normalization="window"``.
    """
    if normalization not in NORMALIZATIONS:
        raise ConfigError(f"normalization must be one of {list(NORMALIZATIONS)}, got {normalization!r}")
    spacing = tuple(fingerprint["median_spacing_mm"] if target_spacing_mm is None else target_spacing_mm)
    if normalization == "window":
        return PreprocessingPlan.window(spacing, window_hu)
    fg = fingerprint["foreground"]
    return PreprocessingPlan(
        target_spacing_mm=spacing,
        normalization="ct_zscore",
        clip_hu=(fg["percentile_00_5"], fg["percentile_99_5"]),
        mean=fg["mean"],
        std=max(fg["std"], 1e-8),
    )
