"""A deterministic, LiTS-like synthetic abdominal CT phantom with liver and tumor labels.

The LiTS data cannot be shipped or downloaded here, so tests, the demo and the benchmarks run on this
phantom. Anatomy is defined in world millimetres (RAS+, patient centred), so a case looks the same at
every resolution; it is then sampled on the case's voxel grid:

* air (-1000 HU), an elliptic body outline with subcutaneous fat (-100 HU) and a muscle wall (50 HU),
  visceral soft tissue with low-frequency texture, vertebral body (cortical and cancellous bone) and
  spinal canal, contrast-filled aorta and inferior vena cava, kidneys and spleen (distractors with
  liver-like or brighter HU);
* a liver (~60 HU, ~1.2-2 L) made of two smoothly deformed ellipsoids (right and left lobe);
* 0-6 hypodense tumors (20-40 HU, radius from a few mm to several cm) entirely inside the liver and
  apart from each other, so the number of connected components equals the number of lesions;
* partial-volume blur (Gaussian, 0.6 voxel) and Gaussian noise, stored as int16 HU.

Labels follow LiTS: 0 background, 1 liver, 2 tumor. Some cases are stored with flipped and permuted
axes (the affine compensates, so the world geometry is unchanged), and spacings vary between cases.
Each case depends only on ``(seed, index)``, not on how many cases are generated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel.orientations as nio
import numpy as np
from scipy import ndimage

from medseg.geometry import voxel_volume_ml
from medseg.io.orientation import axcodes
from medseg.io.volume import Volume, affine_from_geometry
from medseg.labels import lits_labels, tumor_mask
from medseg.utils.progress import tqdm_disable

__all__ = [
    "PHANTOM_SIZES",
    "PhantomCase",
    "PhantomSize",
    "make_phantom",
    "phantom_case_ids",
    "write_phantom_case",
    "write_phantom_dataset",
]


@dataclass(frozen=True)
class PhantomSize:
    """Grid ranges of a phantom size; each case draws its spacing and slice count from them."""

    in_plane: int
    spacing_xy_mm: tuple[float, float]
    slice_mm: tuple[float, ...]
    z_extent_mm: tuple[float, float]
    max_slices: int


PHANTOM_SIZES: dict[str, PhantomSize] = {
    # unit tests: ~60k voxels, well under a second per case
    "tiny": PhantomSize(48, (7.6, 8.4), (8.0, 9.0, 10.0), (200.0, 240.0), 32),
    # demo and CPU training: ~1M voxels
    "small": PhantomSize(128, (2.9, 3.2), (4.0, 5.0, 6.0), (220.0, 280.0), 72),
    # benchmarks: LiTS-like 512 x 512 x 100..300
    "lits": PhantomSize(512, (0.68, 0.82), (1.0, 1.5, 2.0, 2.5, 5.0), (220.0, 330.0), 300),
}

_ORIENTATIONS = (  # storage orientations cycled through by case index; the affine compensates
    ("R", "A", "S"),
    ("L", "P", "S"),  # DICOM-like, as most LiTS volumes
    ("L", "P", "I"),  # reversed slice order
    ("A", "L", "S"),  # permuted in-plane axes
)


@dataclass(frozen=True)
class PhantomCase:
    """One generated case: the CT, its label map (same geometry) and its ground truth."""

    image: Volume
    label: Volume
    info: dict[str, Any]


def phantom_case_ids(cases: int) -> list[str]:
    """Case ids of a phantom data set of ``cases`` cases (``"0"``, ``"1"``, ...)."""
    return [str(i) for i in range(cases)]


def make_phantom(*, size: str = "tiny", seed: int = 0, index: int = 0) -> PhantomCase:
    """Generate one LiTS-like case.

    Args:
        size: ``"tiny"`` (unit tests), ``"small"`` (demo, CPU training) or ``"lits"`` (benchmarks).
        seed: Data-set seed.
        index: Case index within the data set; with ``seed`` it fully determines the case.

    Returns:
        A :class:`PhantomCase`; ``info`` holds the spacing, storage orientation, true liver/tumor
        volumes in mL (from the label map), the lesion count and each lesion's centre and radii.
    """
    if size not in PHANTOM_SIZES:
        raise ValueError(f"size must be one of {sorted(PHANTOM_SIZES)}, got {size!r}")
    spec = PHANTOM_SIZES[size]
    rng = np.random.default_rng([int(seed), int(index), 7919])
    sxy = float(rng.uniform(*spec.spacing_xy_mm))
    sz = float(rng.choice(spec.slice_mm))
    nz = int(np.clip(round(rng.uniform(*spec.z_extent_mm) / sz), 8, spec.max_slices))
    shape = (spec.in_plane, spec.in_plane, nz)
    spacing = (sxy, sxy, sz)
    z_centre = float(rng.uniform(-20.0, 20.0))  # liver sits near z = 0; the scan is not centred on it
    origin = (-(shape[0] - 1) * sxy / 2, -(shape[1] - 1) * sxy / 2 + 15.0, z_centre - (nz - 1) * sz / 2)
    axes = tuple(np.asarray(o, dtype=np.float32) + s * np.arange(n, dtype=np.float32)
                 for o, s, n in zip(origin, spacing, shape))
    grid = _Grid(axes=axes, spacing=spacing)

    hu, labels, lesions = _render(grid, rng)
    sigma = 0.6
    hu = ndimage.gaussian_filter(hu, sigma=sigma, mode="nearest")  # partial-volume blur
    hu += rng.normal(0.0, float(rng.uniform(8.0, 14.0)), size=hu.shape).astype(np.float32)
    image = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)

    affine = affine_from_geometry(spacing, origin_mm=origin)
    target = _ORIENTATIONS[index % len(_ORIENTATIONS)]
    image, labels, affine = _store_as(target, image, labels, affine)
    voxel_ml = voxel_volume_ml(spacing)
    meta = {"format": "phantom", "modality": "CT", "size": size, "seed": int(seed), "index": int(index)}
    img_vol = Volume(array=image, affine=affine, meta=meta)
    lab_vol = Volume(array=labels, affine=affine, meta={**meta, "kind": "label"})
    liver_vox = int(np.count_nonzero(labels))
    tumor = tumor_mask(labels)
    tumor_vox = int(np.count_nonzero(tumor))
    n_components = int(ndimage.label(tumor, structure=np.ones((3, 3, 3)))[1])
    info = {
        "case_id": str(index),
        "shape": list(image.shape),
        "spacing_mm": list(img_vol.spacing_mm),
        "axcodes": "".join(axcodes(affine)),
        "liver_ml": liver_vox * voxel_ml,
        "liver_parenchyma_ml": (liver_vox - tumor_vox) * voxel_ml,
        "tumor_ml": tumor_vox * voxel_ml,
        "tumor_burden_percent": 100.0 * tumor_vox / liver_vox if liver_vox else 0.0,
        "lesion_count": n_components,
        "lesions": lesions,
    }
    return PhantomCase(image=img_vol, label=lab_vol, info=info)


# --------------------------------------------------------------------------------------------------
# rendering


@dataclass(frozen=True)
class _Grid:
    """Voxel-centre world coordinates of a canonical (RAS) grid, one 1D array per axis."""

    axes: tuple[np.ndarray, np.ndarray, np.ndarray]
    spacing: tuple[float, float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(len(a) for a in self.axes)

    def box(self, centre: np.ndarray, half_mm: np.ndarray) -> tuple[slice, ...] | None:
        """Index box covering ``centre +- half_mm``; ``None`` when it misses the grid."""
        out = []
        for ax, s, c, h in zip(self.axes, self.spacing, centre, half_mm):
            lo = int(np.floor((c - h - ax[0]) / s))
            hi = int(np.ceil((c + h - ax[0]) / s)) + 1
            lo, hi = max(lo, 0), min(hi, len(ax))
            if lo >= hi:
                return None
            out.append(slice(lo, hi))
        return tuple(out)

    def coords(self, box: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable coordinate arrays of a box."""
        x, y, z = (a[b] for a, b in zip(self.axes, box))
        return x[:, None, None], y[None, :, None], z[None, None, :]


class _Wobble:
    """A smooth random field in world mm: a sum of a few plane waves (wavelength 60-160 mm)."""

    def __init__(self, rng: np.random.Generator, amplitude: float, waves: int = 4):
        directions = rng.normal(size=(waves, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        self.k = (directions * (2 * np.pi / rng.uniform(60.0, 160.0, size=(waves, 1)))).astype(np.float32)
        self.phase = rng.uniform(0, 2 * np.pi, size=waves).astype(np.float32)
        self.amplitude = np.float32(amplitude / np.sqrt(waves))

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        out = 0.0
        for k, p in zip(self.k, self.phase):
            out = out + np.cos(k[0] * x + k[1] * y + k[2] * z + p)
        return self.amplitude * out


class _Blob:
    """A deformed ellipsoid: inside where ``|(p - c) / r| < 1 + wobble(p)``."""

    def __init__(self, centre, radii, wobble: _Wobble | None = None):
        self.centre = np.asarray(centre, dtype=np.float32)
        self.radii = np.asarray(radii, dtype=np.float32)
        self.wobble = wobble

    def level(self, x, y, z) -> np.ndarray:
        """Signed level (negative inside) at broadcastable coordinates."""
        c, r = self.centre, self.radii
        rho = np.sqrt(((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2)
        return rho - 1.0 - (self.wobble(x, y, z) if self.wobble is not None else 0.0)

    def mask(self, grid: _Grid) -> tuple[tuple[slice, ...] | None, np.ndarray | None]:
        """Inside mask on the blob's bounding box (``(None, None)`` when it misses the grid)."""
        box = grid.box(self.centre, self.radii * 1.35)
        if box is None:
            return None, None
        return box, self.level(*grid.coords(box)) < 0


def _paint(volume: np.ndarray, grid: _Grid, blob: _Blob, value: float | np.ndarray) -> None:
    box, inside = blob.mask(grid)
    if box is not None:
        region = volume[box]
        region[inside] = value if np.isscalar(value) else value[box][inside]


def _render(grid: _Grid, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """HU image (float32, before blur/noise), label map (uint8) and the lesion list."""
    x, y, z = grid.axes
    shape = grid.shape
    hu = np.full(shape, -1000.0, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint8)

    # body outline, fat, muscle wall: elliptic cross-sections that vary slowly along z
    a, b = rng.uniform(150.0, 175.0), rng.uniform(105.0, 125.0)
    swell = (1.0 + 0.05 * np.sin(z / 90.0 + rng.uniform(0, 6.28))).astype(np.float32)[None, None, :]
    r2 = ((x[:, None] / a) ** 2 + ((y[None, :] + 10.0) / b) ** 2)[:, :, None]
    body = r2 < swell**2
    hu[body] = -100.0
    hu[r2 < (0.88 * swell) ** 2] = 50.0
    inner = r2 < (0.8 * swell) ** 2
    tex = _Wobble(rng, amplitude=1.0, waves=5)
    xs, ys, zs = x[:, None, None], y[None, :, None], z[None, None, :]
    visceral = (-20.0 + 45.0 * tex(xs, ys, zs)).astype(np.float32)
    hu[inner] = np.broadcast_to(visceral, shape)[inner]

    # spine: cortical shell, cancellous core, canal; aorta and IVC (contrast)
    spine_y = -b + 45.0
    _paint(hu, grid, _Blob((0.0, spine_y, 0.0), (22.0, 18.0, 1e4)), 650.0)
    _paint(hu, grid, _Blob((0.0, spine_y, 0.0), (17.0, 13.0, 1e4)), 220.0)
    _paint(hu, grid, _Blob((0.0, spine_y - 28.0, 0.0), (8.0, 8.0, 1e4)), 15.0)
    _paint(hu, grid, _Blob((-18.0, spine_y + 28.0, 0.0), (11.0, 11.0, 1e4)), 170.0)
    _paint(hu, grid, _Blob((22.0, spine_y + 32.0, 0.0), (12.0, 10.0, 1e4)), 130.0)

    # kidneys (enhancing) and spleen (liver-like HU): distractors
    for side in (1.0, -1.0):
        kidney = _Blob((side * 70.0, spine_y + 10.0, -70.0 + rng.uniform(-10, 10)), (28.0, 22.0, 50.0))
        _paint(hu, grid, kidney, 160.0)
    spleen = _Blob((-95.0, -25.0, 20.0 + rng.uniform(-10, 10)), (32.0, 45.0, 55.0), _Wobble(rng, 0.06))
    _paint(hu, grid, spleen, 52.0)

    # liver: right lobe + left lobe, deformed; HU ~60 with mild texture
    scale = rng.uniform(0.9, 1.1)
    shape_noise = _Wobble(rng, amplitude=0.12)
    right = _Blob((70.0, 0.0, 0.0), np.array((80.0, 70.0, 72.0)) * scale, shape_noise)
    left = _Blob((10.0, 25.0, 25.0), np.array((52.0, 38.0, 38.0)) * scale, shape_noise)
    liver_hu = np.float32(rng.uniform(55.0, 65.0))
    liver = np.zeros(shape, dtype=bool)
    for lobe in (right, left):
        box, inside = lobe.mask(grid)
        if box is not None:
            liver[box] |= inside
    hu[liver] = liver_hu + 6.0 * np.broadcast_to(tex(xs, ys, zs), shape)[liver]
    labels[liver] = 1

    lesions = _place_tumors(grid, rng, (right, left), hu, labels)
    return hu, labels, lesions


def _inside_liver(lobes, points: np.ndarray) -> np.ndarray:
    """Whether each world point ``(N, 3)`` lies inside the liver (either lobe)."""
    x, y, z = (points[:, i].astype(np.float32) for i in range(3))
    return np.any([lobe.level(x, y, z) < 0 for lobe in lobes], axis=0)


def _place_tumors(grid: _Grid, rng, lobes, hu: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Draw 0-6 non-touching tumors entirely inside the liver and paint them (label 2)."""
    count = int(rng.integers(0, 7))
    min_r = max(2.5, 0.6 * max(grid.spacing))
    sphere = rng.normal(size=(64, 3))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    gap = 2.0 * max(grid.spacing)
    placed: list[dict] = []
    for _ in range(count):
        radius = float(np.exp(rng.uniform(np.log(min_r), np.log(30.0))))
        radii = radius * rng.uniform(0.8, 1.2, size=3)
        for _attempt in range(200):
            lobe = lobes[int(rng.integers(0, len(lobes)))]
            centre = lobe.centre + rng.uniform(-0.8, 0.8, size=3) * lobe.radii
            if not _inside_liver(lobes, centre + sphere * (radii.max() + gap)).all():
                continue
            if any(np.linalg.norm(centre - np.asarray(p["center_mm"])) < radii.max() + p["radius_mm"] + gap
                   for p in placed):
                continue
            break
        else:
            continue  # no room for this one
        tumor = _Blob(centre, radii, None)
        value = float(rng.uniform(20.0, 40.0))
        box, inside = tumor.mask(grid)
        if box is None or not inside.any():
            continue
        inside &= labels[box] > 0
        hu[box][inside] = value
        labels[box][inside] = 2
        placed.append({"center_mm": [float(c) for c in centre], "radii_mm": [float(r) for r in radii],
                       "radius_mm": float(radii.max()), "hu": value})
    return placed


def _store_as(target: tuple[str, str, str], image: np.ndarray, labels: np.ndarray, affine: np.ndarray):
    """Re-store canonical (RAS) arrays in orientation ``target``, adjusting the affine to match."""
    transform = nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt(target))
    new_affine = affine @ nio.inv_ornt_aff(transform, image.shape)
    return (
        np.ascontiguousarray(nio.apply_orientation(image, transform)),
        np.ascontiguousarray(nio.apply_orientation(labels, transform)),
        new_affine,
    )


def write_phantom_case(case: PhantomCase, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Write a case in the LiTS layout (``volume-N.nii.gz``, ``segmentation-N.nii.gz``)."""
    from medseg.io.nifti import write_nifti

    out_dir = Path(out_dir)
    cid = case.info["case_id"]
    image_name, label_name = f"volume-{cid}.nii.gz", f"segmentation-{cid}.nii.gz"
    write_nifti(case.image, out_dir / image_name)
    write_nifti(case.label, out_dir / label_name, label=True)
    return {**case.info, "image": image_name, "label": label_name}


def _generate_and_write(job: tuple[str, int, int, str]) -> dict[str, Any]:
    size, seed, index, out_dir = job
    return write_phantom_case(make_phantom(size=size, seed=seed, index=index), out_dir)


def write_phantom_dataset(
    out_dir: str | os.PathLike,
    *,
    cases: int = 8,
    size: str = "small",
    seed: int = 0,
    workers: int | None = None,
    progress: bool | None = None,
) -> Path:
    """Generate ``cases`` phantom cases in the LiTS layout plus ``manifest.json``; returns its path.

    The manifest lists each case's files, shape, spacing, storage orientation, true liver / parenchyma
    / tumor volumes in mL, tumor burden in percent and lesions (count, centres, radii, HU).
    """
    from medseg.utils.atomic import atomic_write_json
    from medseg.utils.parallel import map_with_progress

    if size not in PHANTOM_SIZES:
        raise ValueError(f"size must be one of {sorted(PHANTOM_SIZES)}, got {size!r}")
    if cases < 1:
        raise ValueError(f"cases must be >= 1, got {cases}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(size, int(seed), i, str(out_dir)) for i in range(cases)]
    entries = map_with_progress(
        _generate_and_write, jobs, workers=workers, desc=f"phantom ({size})",
        disable=tqdm_disable(progress),
    )
    manifest = {
        "generator": "medseg.data.phantom",
        "format_version": 1,
        "size": size,
        "seed": int(seed),
        "labels": lits_labels(),
        "cases": entries,
    }
    return atomic_write_json(out_dir / "manifest.json", manifest)
