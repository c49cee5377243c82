"""``make demo``: the researcher's whole path on built-in phantom data, through the real CLI.

Steps (each one is a ``medseg`` command, so the demo exercises exactly what a user types):

1. ``medseg phantom`` — a ``small`` LiTS-like training set and a separate held-out set;
2. ``medseg check`` — integrity check of the training set;
3. ``medseg train liver`` — CPU-sized settings on a machine without GPU, the full defaults with one;
4. ``medseg predict`` — the held-out scans, back in their own geometry;
5. ``medseg evaluate`` — metrics against the held-out references, with figures;
6. ``medseg volumes`` — the volume report of one predicted case;

then overlays of scan, reference and prediction, and a summary table of Dice, HD95 and volumes
against the phantom's ground truth, with the paths of every figure written.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "run_demo"]

log = logging.getLogger(__name__)


def _medseg(*args: str) -> None:
    """Run one ``medseg`` command in a subprocess; stop the demo if it fails."""
    cmd = [sys.executable, "-m", "medseg", *args]
    print(f"\n$ medseg {' '.join(args)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(cmd, check=False)
    if result.returncode != 0:
        raise SystemExit(f"demo: `medseg {args[0]}` failed with exit code {result.returncode}")
    print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)


def run_demo(
    out: Path, *, train_cases: int = 12, heldout_cases: int = 3, seed: int = 0, epochs: int | None = None
) -> dict:
    """Run the whole demo into ``out``; returns the summary (also written to ``out/summary.json``)."""
    from medseg.data.naming import prediction_filename
    from medseg.errors import DataError
    from medseg.runs.folder import find_run_folder

    start = time.perf_counter()
    data, heldout = out / "data", out / "heldout"
    run_root, pred, evaluation = out / "run", out / "predictions", out / "evaluation"
    _medseg("phantom", str(data), "--cases", str(train_cases), "--size", "small", "--seed", str(seed))
    _medseg("phantom", str(heldout), "--cases", str(heldout_cases), "--size", "small", "--seed", str(seed + 1000))
    _medseg("check", str(data))
    train_args = ["train", "liver", "--data", str(data), "--out", str(run_root)]
    if epochs is not None:
        train_args += ["--epochs", str(epochs)]
    _medseg(*train_args)
    try:
        run_dir = find_run_folder(run_root)
    except DataError as exc:
        raise SystemExit(f"demo: {exc}") from None
    _medseg("predict", "--model", str(run_dir), str(heldout), "--out", str(pred))
    _medseg("evaluate", "--pred", str(pred), "--ref", str(heldout), "--out", str(evaluation))
    manifest = json.loads((heldout / "manifest.json").read_text())
    first = manifest["cases"][0]
    volumes_json = out / "volumes" / f"{first['case_id']}_volumes.json"
    _medseg("volumes", str(pred / prediction_filename(first["case_id"])), "--image", str(heldout / first["image"]),
            "--json", str(volumes_json))
    figures = _overlays(heldout, pred, manifest, out / "figures")
    summary = _summarise(out, evaluation, pred, manifest, run_dir, figures, time.perf_counter() - start)
    return summary


def _overlays(heldout: Path, pred: Path, manifest: dict, fig_dir: Path) -> list[Path]:
    """One overlay PNG per held-out case: scan, reference, prediction on a few slices."""
    from medseg.data.naming import prediction_filename
    from medseg.io import read_volume
    from medseg.viz import plot_overlays

    paths = []
    for entry in manifest["cases"]:
        image = read_volume(heldout / entry["image"])
        ref = read_volume(heldout / entry["label"])
        prediction = read_volume(pred / prediction_filename(entry["case_id"]))
        paths.append(plot_overlays(image, {"reference": ref, "prediction": prediction},
                                   fig_dir / f"overlay_{entry['case_id']}.png", title=f"case {entry['case_id']}"))
    return paths


def _summarise(out: Path, evaluation: Path, pred: Path, manifest: dict, run_dir: Path, figures: list[Path],
               seconds: float) -> dict:
    """Print and save the summary table: per case Dice, HD95 and volumes against the phantom truth."""
    import pandas as pd

    from medseg.utils.atomic import atomic_write_json

    per_case = pd.read_csv(evaluation / "per_case.csv", dtype={"case": str}).set_index("case")
    rows = []
    for entry in manifest["cases"]:
        cid = entry["case_id"]
        volumes = json.loads((pred / f"{cid}_volumes.json").read_text())
        metrics = per_case.loc[cid]
        rows.append({
            "case": cid,
            "liver_dice": metrics["liver_dice"],
            "liver_hd95_mm": metrics["liver_hd95_mm"],
            "tumor_dice": metrics["tumor_dice"],
            "liver_ml_pred": volumes["liver_ml"],
            "liver_ml_true": entry["liver_ml"],
            "tumor_ml_pred": volumes["tumor_ml"],
            "tumor_ml_true": entry["tumor_ml"],
            "lesions_pred": len(volumes["lesions"]),
            "lesions_true": entry["lesion_count"],
        })
    table = pd.DataFrame(rows).set_index("case")
    figure_paths = sorted({*figures, *evaluation.glob("*.png"), *run_dir.glob("*.png")})
    print("\n=== medseg demo summary ===")
    print(table.to_string(float_format=lambda v: f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"))
    print(f"\nmean liver Dice {table['liver_dice'].mean():.3f}, mean tumor Dice {table['tumor_dice'].mean():.3f} "
          f"(tumor Dice is 0 for a case with lesions none of which were found, and 1 when both are empty)")
    print(f"run folder: {run_dir}\nfigures:")
    for path in figure_paths:
        print(f"  {path}")
    print(f"total time: {seconds / 60:.1f} min")
    summary = {"cases": table.reset_index().to_dict(orient="records"), "run_dir": str(run_dir),
               "figures": [str(p) for p in figure_paths], "seconds": seconds}
    atomic_write_json(out / "summary.json", summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m medseg.demo``."""
    os.environ.setdefault("MPLBACKEND", "Agg")  # an entry point, like the CLI: figures go to PNG files
    parser = argparse.ArgumentParser(prog="python -m medseg.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default: %(default)s)")
    parser.add_argument("--train-cases", type=int, default=12, help="phantom training cases (default: %(default)s)")
    parser.add_argument("--heldout-cases", type=int, default=3, help="held-out phantom cases (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=None, help="override the pipeline's epochs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_demo(args.out, train_cases=args.train_cases, heldout_cases=args.heldout_cases, seed=args.seed,
             epochs=args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
