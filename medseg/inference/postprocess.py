"""Post-processing of predicted liver/tumor label maps (0 background, 1 liver, 2 tumor).

Three steps, each optional, applied in this order on the scan's own grid (so sizes are in mm^3):

1. **keep the largest liver**: only the largest 26-connected component of the foreground (liver and
   tumor together, so a liver cut in two by a tumor stays whole) is kept; the rest becomes background.
2. **tumor inside the liver**: a tumor component (26-connected) is kept only if it touches the liver
   parenchyma dilated by ``tumor_inside_liver_dilation_mm``; otherwise it becomes background.
3. **small lesions**: a tumor component smaller than ``min_lesion_volume_mm3`` becomes liver when it
   touches the parenchyma (it sits in the liver, so the liver volume is unchanged), background otherwise.

Connected components come from :func:`scipy.ndimage.label`; the dilation uses
:func:`scipy.ndimage.binary_dilation` with an ellipsoidal structuring element whose radii are
``dilation_mm / spacing_mm`` voxels, so it is isotropic in millimetres on anisotropic grids. Work is done
inside the foreground's bounding box, so memory stays near the size of the label map, and the dilation
(whose cost grows with the structuring element: ~1000 voxels for 5 mm at 0.8 mm) only around tumor
components that do not already touch the liver (9.6 s -> well under a second on a 512x512x298 scan). Whether a
component touches the liver is also decided in its own crop (the component's box plus the dilation's reach):
a 26-neighbour dilation of the whole liver cost 0.9-2.5 s on that scan; inside the crop it gives the same
voxels next to the component, so the same result (tested against whole-map scipy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage

from medseg.boxes import bounding_box
from medseg.errors import ConfigError
from medseg.geometry import voxel_volume_ml
from medseg.inference.crf import CrfSettings
from medseg.labels import LIVER, TUMOR, is_lits

__all__ = [
    "NO_POSTPROCESSING",
    "PostprocessConfig",
    "applies_to",
    "ball_mm",
    "keep_largest_foreground",
    "postprocess_labels",
    "remove_small_lesions",
    "restrict_tumor_to_liver",
]

_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity, as the phantom's lesion count


@dataclass(frozen=True)
class PostprocessConfig:
    """Which post-processing steps run (the ``postprocessing`` section of a pipeline).

    Attributes:
        keep_largest_liver: Keep only the largest foreground component.
        tumor_inside_liver_dilation_mm: Keep tumor components touching the liver dilated by this many
            mm; ``None`` disables the step.
        min_lesion_volume_mm3: Tumor components below this volume become liver; 0 disables the step.
        crf: Dense CRF refinement of the probabilities before the other steps
            (:mod:`medseg.inference.crf`); ``None`` (default) disables it.
    """

    keep_largest_liver: bool = True
    tumor_inside_liver_dilation_mm: float | None = 5.0
    min_lesion_volume_mm3: float = 0.0
    crf: CrfSettings | None = None

    def __post_init__(self) -> None:
        d = self.tumor_inside_liver_dilation_mm
        if d is not None and not d >= 0:
            raise ConfigError(f"postprocessing.tumor_inside_liver_dilation_mm must be >= 0 or null, got {d}")
        if not self.min_lesion_volume_mm3 >= 0:
            raise ConfigError(f"postprocessing.min_lesion_volume_mm3 must be >= 0, got {self.min_lesion_volume_mm3}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PostprocessConfig:
        """Build from a config mapping; unknown keys raise :class:`ConfigError` listing the valid ones."""
        data = dict(data or {})
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ConfigError(f"unknown postprocessing key(s) {unknown}; valid keys: {sorted(valid)}")
        if isinstance(data.get("crf"), Mapping):
            crf = dict(data["crf"])
            known = {f.name for f in fields(CrfSettings)}
            if set(crf) - known:
                raise ConfigError(f"unknown postprocessing.crf key(s) {sorted(set(crf) - known)}; valid keys: "
                                  f"{sorted(known)}")  # fmt: skip
            data["crf"] = CrfSettings(**crf)
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (``crf`` only when it is on, so files written before it existed compare equal)."""
        data = asdict(self)
        if data["crf"] is None:
            del data["crf"]
        return data


#: Every step off: the raw argmax of the network (``medseg predict --no-postprocessing``).
NO_POSTPROCESSING = PostprocessConfig(keep_largest_liver=False, tumor_inside_liver_dilation_mm=None,
                                      min_lesion_volume_mm3=0.0)


#: Whether label names (class index -> name) are LiTS' (1 liver, 2 tumor), which the steps assume:
#: :func:`medseg.labels.is_lits`.
applies_to = is_lits


def ball_mm(radius_mm: float, *, spacing_mm: Sequence[float]) -> np.ndarray:
    """Ellipsoidal structuring element holding the voxels within ``radius_mm`` of the centre (in mm)."""
    half = [int(np.floor(radius_mm / s)) for s in spacing_mm]
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    dist2 = sum((g * s) ** 2 for g, s in zip(grids, spacing_mm))
    return dist2 <= radius_mm**2 + 1e-9


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected components of ``mask`` as uint16 when they fit (half the memory of int32)."""
    try:
        return ndimage.label(mask, structure=_CONNECTIVITY, output=np.uint16)
    except RuntimeError:  # more than 65535 components
        return ndimage.label(mask, structure=_CONNECTIVITY)


def _sizes(components: np.ndarray, n: int) -> np.ndarray:
    """Voxel count per component label ``0..n`` (``np.bincount`` per block: it casts to int64)."""
    sizes = np.zeros(n + 1, dtype=np.int64)
    for start in range(0, components.shape[0], 16):
        sizes += np.bincount(components[start : start + 16].ravel(), minlength=n + 1)
    return sizes


def keep_largest_foreground(labels: np.ndarray) -> np.ndarray:
    """Keep the largest 26-connected component of ``labels > 0``; returns a new ``(X, Y, Z)`` map."""
    out = labels.copy()
    box = bounding_box(labels)
    if box is None:
        return out
    components, n = _components(labels[box] > 0)
    if n > 1:
        sizes = _sizes(components, n)
        sizes[0] = 0
        region = out[box]
        region[components != int(np.argmax(sizes))] = 0  # background stays 0
    return out


def restrict_tumor_to_liver(labels: np.ndarray, *, spacing_mm: Sequence[float], dilation_mm: float) -> np.ndarray:
    """Remove tumor components that do not touch the liver parenchyma dilated by ``dilation_mm``.

    Args:
        labels: ``(X, Y, Z)`` label map (0/1/2).
        spacing_mm: Voxel size per axis.
        dilation_mm: Dilation radius of the liver, in mm (0: the tumor must touch the liver).

    Returns:
        A new label map; removed tumor voxels become background.
    """
    out = labels.copy()
    tumor = bounding_box(labels == TUMOR)
    if tumor is None:
        return out
    ball = ball_mm(dilation_mm, spacing_mm=spacing_mm)
    reach = [b // 2 + 1 for b in ball.shape]  # how far a liver voxel's dilation reaches, per axis
    components, n = _components(labels[tumor] == TUMOR)  # every tumor voxel is in its box
    keep = np.zeros(n + 1, dtype=bool)
    for index, where in enumerate(ndimage.find_objects(components), start=1):
        if where is None:
            continue
        crop = tuple(slice(max(0, t.start + w.start - r), min(n_ax, t.start + w.stop + r))
                     for t, w, r, n_ax in zip(tumor, where, reach, labels.shape))  # fmt: skip
        mine = np.zeros(tuple(c.stop - c.start for c in crop), dtype=bool)  # the component, in its crop
        inner = tuple(slice(t.start + w.start - c.start, t.start + w.stop - c.start)
                      for t, w, c in zip(tumor, where, crop))  # fmt: skip
        mine[inner] = components[where] == index
        near = ndimage.binary_dilation(labels[crop] == LIVER, structure=_CONNECTIVITY)
        keep[index] = bool((near & mine).any())
        if not keep[index] and ball.size > 1:
            keep[index] = bool((ndimage.binary_dilation(near, ball) & mine).any())
    region = out[tumor]
    region[(components > 0) & ~keep[components]] = 0
    return out


def remove_small_lesions(labels: np.ndarray, *, spacing_mm: Sequence[float], min_volume_mm3: float,
                         affine: np.ndarray | None = None) -> np.ndarray:
    """Relabel tumor components smaller than ``min_volume_mm3``: liver if they touch it, else background.

    Args:
        labels: ``(X, Y, Z)`` label map (0/1/2).
        spacing_mm: Voxel size per axis; without ``affine`` a voxel's volume is their product.
        min_volume_mm3: Smallest lesion volume kept, in mm^3 (components of exactly this size are kept).
        affine: ``(4, 4)`` affine of the grid: a voxel's volume is ``|det|`` of its 3x3 (exact on a tilted or
            sheared grid, where the product of the spacings overestimates it).
    """
    out = labels.copy()
    tumor = labels == TUMOR
    if min_volume_mm3 <= 0 or not tumor.any():
        return out
    voxel_mm3 = voxel_volume_ml(spacing_mm, affine=affine) * 1000.0
    box = bounding_box(labels, margin=(1, 1, 1))
    components, n = _components(tumor[box])
    sizes_mm3 = _sizes(components, n) * voxel_mm3
    small = sizes_mm3 < min_volume_mm3
    small[0] = False
    if not small.any():
        return out
    liver = ndimage.binary_dilation(labels[box] == LIVER, structure=_CONNECTIVITY)
    touching = np.zeros(n + 1, dtype=bool)
    touching[np.unique(components[liver & (components > 0)])] = True
    region = out[box]
    region[small[components] & touching[components]] = LIVER
    region[small[components] & ~touching[components]] = 0
    return out


def postprocess_labels(
    labels: np.ndarray,
    *,
    spacing_mm: Sequence[float],
    config: PostprocessConfig | None = None,
    affine: np.ndarray | None = None,
) -> np.ndarray:
    """Apply the configured steps (see the module docstring) to a ``(X, Y, Z)`` uint8 label map.

    The input is not modified; the result is a new uint8 array of the same shape. ``affine`` (the grid's) gives
    the lesion size threshold the true voxel volume (``|det|``); without it, the product of ``spacing_mm``.
    """
    config = config or PostprocessConfig()
    out = np.asarray(labels).astype(np.uint8, copy=True)
    dilation = config.tumor_inside_liver_dilation_mm or 0.0
    margin = [int(np.floor(dilation / s)) + 2 for s in spacing_mm]
    box = bounding_box(out, margin=margin)  # all steps act near the foreground: work on its box (less memory)
    if box is None:
        return out
    crop = out[box].copy()
    if config.keep_largest_liver:
        crop = keep_largest_foreground(crop)
    if config.tumor_inside_liver_dilation_mm is not None:
        crop = restrict_tumor_to_liver(crop, spacing_mm=spacing_mm, dilation_mm=config.tumor_inside_liver_dilation_mm)
    if config.min_lesion_volume_mm3 > 0:
        crop = remove_small_lesions(crop, spacing_mm=spacing_mm, min_volume_mm3=config.min_lesion_volume_mm3,
                                    affine=affine)
    out[box] = crop
    return out
