"""Per reference lesion of the accuracy benchmark's cases: found (any predicted tumor voxel on it) by each
mode, counted for lesions under and over 100 voxels. Reads the label maps that
``bench_inference.py --accuracy`` wrote; run it after that benchmark with the same ``--model`` and ``--work``.

Usage: ``python benchmarks/tta_lesions.py --model RUN --work /tmp/medseg-bench-inference``
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import _accuracy
import numpy as np
from scipy import ndimage

from medseg.io import read_volume

MODES = ("full", "default", "tta")


def lesion_hits(case: _accuracy.Case, work: Path) -> list[dict]:
    """One row per 26-connected reference lesion: its voxels and whether each mode's map touches it."""
    ref = np.asarray(read_volume(case.label).array) == 2
    components, n = ndimage.label(ref, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(components.ravel())
    stem = re.sub("[^A-Za-z0-9]+", "-", case.name)
    tumor = {m: np.asarray(read_volume(work / "predictions" / m / f"{stem}_seg.nii.gz").array) == 2 for m in MODES}
    return [{"case": case.name, "voxels": int(sizes[k]), **{m: bool(tumor[m][components == k].any()) for m in MODES}}
            for k in range(1, n + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/medseg-bench-inference"))
    parser.add_argument("--fresh", default="small:7:0,1,2,3;lits:100:0,1")
    args = parser.parse_args()
    rows = [r for case in _accuracy.held_out_cases(args.model, args.work, fresh=_accuracy.parse_fresh(args.fresh))
            for r in lesion_hits(case, args.work)]
    for name, group in (("< 100 voxels", [r for r in rows if r["voxels"] < 100]),
                        (">= 100 voxels", [r for r in rows if r["voxels"] >= 100])):
        print(f"{name}: {len(group)} lesions; found: " + ", ".join(f"{m} {sum(r[m] for r in group)}" for m in MODES))
    for r in rows:
        if r["default"] != r["tta"] or r["full"] != r["default"]:
            print("differs:", r)


if __name__ == "__main__":
    main()
