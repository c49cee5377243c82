"""Is this scan something the model can segment? Refusals before prediction, warnings around it.

Two kinds of findings, each one line naming the scan:

* **Refusals** (always errors, before any work): NaN/inf voxels, or an "image" whose values are a label
  map's (a few small integers, e.g. 0/1/2 or 0/255: a segmentation in the scan folder).
* **Warnings** (errors with ``strict=True``): the scan is unlike the run's training data, compared with its
  preprocessing plan (:class:`~medseg.preprocessing.PreprocessingPlan`, which the checkpoint carries):

  ==================  ===================================================================================
  ``spacing``         a voxel size more than ``spacing_ratio`` times larger or smaller than the plan's
                      target spacing on the same (canonical R, A, S) axis
  ``field_of_view``   an in-plane extent outside ``fov_mm`` (abdominal CT is ~250-500 mm across)
  ``modality``        a DICOM series whose Modality is not CT (values may not be HU)
  ``no_body``         fewer than ``min_body_fraction`` of the voxels above ``body_hu`` (no patient)
  ``liver_hu``        the median HU inside the predicted liver outside the plan's foreground intensity
                      range (``clip_hu``: the 0.5-99.5 percentiles of the training foreground for
                      nnU-Net's CT normalisation; Isensee et al., Nature Methods 2021)
  ==================  ===================================================================================

The thresholds are our own choice (nnU-Net and MONAI have no such checks); they are loose on purpose: a
warning says "look at this case", not "the prediction is wrong".
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel.orientations as nio
import numpy as np

from medseg.boxes import bounding_box
from medseg.errors import ConfigError, DataError
from medseg.io.label_map import looks_like_label_map
from medseg.io.volume import Volume
from medseg.labels import liver_mask

__all__ = ["ScanChecks", "refuse_unusable_scan"]

_AXES = "RAS"


def refuse_unusable_scan(volume: Volume, path=None) -> None:
    """Raise for a scan that must not be predicted at all: NaN/inf voxels, or a label map given as a scan.

    Raises:
        DataError: One line naming ``path`` (or ``volume.meta["path"]``) and the problem.
    """
    path = path or volume.meta.get("path")
    values = np.asarray(volume.array)
    if np.issubdtype(values.dtype, np.floating):
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        if bad:
            raise DataError(f"{bad} NaN/inf voxels in the scan; fix or mask them before predicting", path=path)
    kind = looks_like_label_map(values)
    if kind:
        raise DataError(kind, path=path)


@dataclass(frozen=True)
class ScanChecks:
    """How far a scan may be from the training data before a warning (see the module docstring).

    Attributes:
        plan: The run's preprocessing plan (target spacing, foreground intensity range).
        strict: Findings are errors (the case fails) instead of warnings.
        spacing_ratio: Largest allowed ratio between a voxel size and the target spacing, either way.
        fov_mm: ``(min, max)`` in-plane extent in mm.
        body_hu: HU above which a voxel is body (not air).
        min_body_fraction: Smallest fraction of body voxels.
    """

    plan: object
    strict: bool = False
    spacing_ratio: float = 2.5
    fov_mm: tuple[float, float] = (150.0, 700.0)
    body_hu: float = -500.0
    min_body_fraction: float = 0.02

    def __post_init__(self) -> None:
        if not self.spacing_ratio > 1:
            raise ConfigError(f"spacing_ratio must be > 1, got {self.spacing_ratio!r}")
        if not 0 < self.fov_mm[0] < self.fov_mm[1]:
            raise ConfigError(f"fov_mm must be (min, max) with 0 < min < max, got {self.fov_mm!r}")

    def before(self, volume: Volume, path=None) -> list[str]:
        """Refusals (raised) and warnings about the scan itself, before prediction."""
        refuse_unusable_scan(volume, path)
        findings = [*self._spacing(volume), *self._field_of_view(volume)]
        modality = volume.meta.get("modality")
        if volume.meta.get("format") == "dicom" and modality != "CT":
            findings.append(f"modality: {modality or 'unset'!r}, not CT; values may not be Hounsfield units")
        values = np.asarray(volume.array)
        body = float(np.count_nonzero(values > self.body_hu)) / max(values.size, 1)
        if body < self.min_body_fraction:
            findings.append(f"no_body: only {100 * body:.2f}% of the voxels are above {self.body_hu:g} HU; "
                            "no patient in the scan?")
        return self._settle(findings, volume, path)

    def after(self, volume: Volume, labels: Volume, path=None) -> list[str]:
        """Warnings about the prediction: the predicted liver's intensities against the training data's."""
        box = bounding_box(labels.array)  # the liver lies in the label map's box: masks of the box only
        mask = liver_mask(labels.array[box]) if box is not None else None
        if mask is None or not mask.any():
            return []
        median = float(np.median(np.asarray(volume.array)[box][mask]))  # the median ignores the voxels' order
        low, high = self.plan.clip_hu
        findings = []
        if not low <= median <= high:
            findings.append(f"liver_hu: median {median:.0f} HU inside the predicted liver, outside the training "
                            f"foreground range {low:.0f}..{high:.0f} HU (another contrast phase or a scaling "
                            "problem?)")
        return self._settle(findings, volume, path)

    def _spacing(self, volume: Volume) -> list[str]:
        spacing = _canonical_spacing(volume)
        target = np.asarray(self.plan.target_spacing_mm, dtype=float)
        ratio = spacing / target
        off = [i for i in range(3) if ratio[i] > self.spacing_ratio or ratio[i] < 1 / self.spacing_ratio]
        if not off:
            return []
        shown = "x".join(f"{s:.3g}" for s in spacing)
        planned = "x".join(f"{s:.3g}" for s in target)
        axes = ", ".join(_AXES[i] for i in off)
        return [f"spacing: voxel size {shown} mm (R, A, S) is far from the model's {planned} mm along {axes} "
                f"(more than {self.spacing_ratio:g}x)"]

    def _field_of_view(self, volume: Volume) -> list[str]:
        extent = _canonical_spacing(volume) * _canonical_shape(volume)
        low, high = self.fov_mm
        in_plane = extent[:2]
        if np.all((in_plane >= low) & (in_plane <= high)):
            return []
        shown = "x".join(f"{e:.0f}" for e in in_plane)
        return [f"field_of_view: {shown} mm in-plane (R, A), outside the usual {low:g}..{high:g} mm of abdominal CT"]

    def _settle(self, findings: list[str], volume: Volume, path) -> list[str]:
        if findings and self.strict:
            raise DataError("--strict: " + "; ".join(findings), path=path or volume.meta.get("path"))
        return findings


def _canonical_order(volume: Volume) -> np.ndarray:
    """World axis (0 R, 1 A, 2 S) of each array axis."""
    return nio.io_orientation(volume.affine)[:, 0].astype(int)


def _canonical_spacing(volume: Volume) -> np.ndarray:
    out = np.zeros(3)
    out[_canonical_order(volume)] = volume.spacing_mm
    return out


def _canonical_shape(volume: Volume) -> np.ndarray:
    out = np.zeros(3)
    out[_canonical_order(volume)] = volume.shape[:3]
    return out
