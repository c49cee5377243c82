"""Not a speed benchmark: how far the surface conventions of docs/metrics.md move the numbers.

On balls (radius, growth and shift varied) and smooth random blobs at five spacings, plus a sweep of
315 ball pairs with voxels of 2-6 mm, it compares medseg's NSD at 2 mm and ASSD with DeepMind's
surfel-area weighted ``surface-distance`` (average of its two directed ASSDs, as usually reported), and
medseg's face-neighbour ASSD/RMSD with the LiTS 2017 scorer's 18-neighbourhood ones
(:func:`medseg.evaluation.lits2017.segmentation_scores`).

DeepMind's package is not a medseg dependency: install it anywhere and point ``--deepmind`` at the folder
(``pip install --target /tmp/sdlib surface-distance``); without it only the 18- vs 6-neighbour figures are
printed. Re-run: ``.venv/bin/python benchmarks/conventions.py [--deepmind /tmp/sdlib]``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medseg.evaluation import binary_metrics
from medseg.evaluation.lits2017 import segmentation_scores

SPACINGS = [(1.0, 1.0, 1.0), (0.7, 0.7, 2.5), (0.8, 0.8, 5.0), (3.0, 3.0, 3.0), (0.6, 0.6, 1.0)]
SWEEP_SPACINGS = [(2.0, 2.0, 2.0), (2.5, 2.5, 2.5), (3, 3, 3), (4, 4, 4), (5, 5, 5), (1, 1, 5), (0.8, 0.8, 6)]


def _ball(shape, center, radius_mm, spacing):
    grid = np.indices(shape, dtype=float)
    return sum(((g - c) * s) ** 2 for g, c, s in zip(grid, center, spacing)) <= radius_mm**2


def _pairs(spacing, rng):
    """Balls (radius, growth dr, shift along axis 0 in mm) and four random blobs, each as (pred, ref)."""
    shape = tuple(int(np.ceil(90 / s)) for s in spacing)
    center = np.array(shape) / 2
    for r, dr, shift in [(20, 0, 0), (20, 1.5, 0), (20, 3, 0), (20, 0, 2), (10, 1, 1), (6, 0.5, 0), (25, -4, 3)]:
        moved = center + np.array([shift / spacing[0], 0, 0])
        yield _ball(shape, moved, r + dr, spacing), _ball(shape, center, r, spacing)
    for k in range(4):
        field = ndimage.gaussian_filter(rng.random(shape), 6 / np.array(spacing))
        ref = field > np.quantile(field, 0.9)
        yield (ndimage.binary_dilation(ref, iterations=k % 2 + 1) if k < 2 else ndimage.binary_erosion(ref)), ref


def _sweep(spacing):
    shape = tuple(int(np.ceil(100 / s)) for s in spacing)
    center = np.array(shape) / 2
    for r in (8, 15, 30):
        for dr in (0.5, 1, 1.5, 2, 3):
            for shift in (0, 1, 2):
                moved = center + np.array([shift / spacing[0], 0, 0])
                yield _ball(shape, moved, r + dr, spacing), _ball(shape, center, r, spacing)


def _deepmind(sd, pred, ref, spacing):
    d = sd.compute_surface_distances(ref, pred, spacing)
    directed = sd.compute_average_surface_distance(d)
    return sd.compute_surface_dice_at_tolerance(d, 2.0), (directed[0] + directed[1]) / 2


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deepmind", type=Path, default=None, help="folder holding DeepMind's surface_distance")
    args = parser.parse_args(argv)
    sd = None
    if args.deepmind:
        sys.path.insert(0, str(args.deepmind))
        from surface_distance import metrics as sd
    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    nsd_gap, assd_gap, lower_assd, lower_rmsd = {}, {}, [], []
    for spacing in SPACINGS:
        for pred, ref in _pairs(spacing, rng):
            ours = binary_metrics(pred, ref, spacing_mm=spacing, nsd_tolerance_mm=2.0)
            lits = segmentation_scores(pred, ref, spacing_mm=spacing)
            if ours["assd_mm"] > 0:
                lower_assd.append(1 - lits["assd"] / ours["assd_mm"])
                lower_rmsd.append(1 - lits["rmsd"] / ours["rmsd_mm"])
            if sd is not None:
                nsd, assd = _deepmind(sd, pred, ref, spacing)
                nsd_gap[spacing] = max(nsd_gap.get(spacing, 0.0), abs(ours["nsd"] - nsd))
                if ours["assd_mm"] > 0:
                    assd_gap[spacing] = max(assd_gap.get(spacing, 0.0), abs(assd - ours["assd_mm"]) / ours["assd_mm"])
    print(f"18- vs 6-neighbour surface: ASSD lower by up to {max(lower_assd):.0%}, RMSD by up to {max(lower_rmsd):.0%}")
    if sd is None:
        return
    for spacing in SPACINGS:
        print(
            f"DeepMind vs medseg at {spacing} mm: NSD(2 mm) up to {nsd_gap[spacing]:.2f} apart, "
            f"ASSD up to {assd_gap[spacing]:.0%}"
        )
    worst_nsd, worst_assd = 0.0, 0.0
    for spacing in SWEEP_SPACINGS:
        for pred, ref in _sweep(spacing):
            ours = binary_metrics(pred, ref, spacing_mm=spacing)
            nsd, assd = _deepmind(sd, pred, ref, spacing)
            worst_nsd = max(worst_nsd, abs(ours["nsd"] - nsd))
            if ours["assd_mm"] > 0:
                worst_assd = max(worst_assd, abs(assd - ours["assd_mm"]) / ours["assd_mm"])
    print(f"sweep of 315 ball pairs, 2-6 mm voxels: NSD(2 mm) up to {worst_nsd:.2f} apart, ASSD up to {worst_assd:.0%}")


if __name__ == "__main__":
    main()
