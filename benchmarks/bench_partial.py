"""Training from partial annotations (issue #30): liver and tumor Dice after equal training against the
annotated fraction, on the phantom.

One phantom training set (dense labels) is turned into partially annotated copies with `medseg sparsify`
(20 % of the axial slices, scribbles on 20 % of the slices, lesion boxes inside the dense liver with two
tumor-core sizes); each copy
and the dense set train the same pipeline (`medseg train` with `data.ignore_label=3`, same seed, epochs,
iterations and network, fold 0); each run predicts a separate dense
phantom test set (`medseg predict`, the run's post-processing) scored by `medseg evaluate` (mean Dice over
the test cases).

    taskset -c 1 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_partial.py            # ~15 min, 1 core
    .venv/bin/python benchmarks/bench_partial.py --epochs 4 --iterations 10 --no-write           # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section

VARIANTS = {  # short name -> (table label, medseg sparsify arguments; None: the dense set)
    "dense": ("dense", None),
    "slices": ("20 % of axial slices", ["--scheme", "slices", "--fraction", "0.2"]),
    "scribbles": ("scribbles on 20 % of slices", ["--scheme", "scribbles", "--fraction", "0.2"]),
    "boxes": ("tumor boxes (core 0.5), dense liver", ["--scheme", "boxes"]),
    "boxes80": ("tumor boxes (core 0.8), dense liver", ["--scheme", "boxes", "--core", "0.8"]),
}


def _medseg(*args: str, log: Path) -> float:
    """Run ``medseg ARGS`` with output to ``log``; return its CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with log.open("w") as handle:
        env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-m", "medseg", *args], stdout=handle, stderr=subprocess.STDOUT,
                              env=env)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"`medseg {' '.join(args)}` failed (exit {done.returncode}); see {log}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _variant(slug: str, tmp: Path, args) -> dict:
    name, sparsify = VARIANTS[slug]
    data, fraction = tmp / "train", 1.0
    if sparsify is not None:
        data = tmp / f"train-{slug}"
        _medseg("sparsify", str(tmp / "train"), str(data), *sparsify, "--seed", "0", log=tmp / f"{slug}-sparsify.log")
        fraction = json.loads((data / "dataset.json").read_text())["sparsify"]["annotated_fraction"]
    run = tmp / f"run-{slug}"
    sets = [f"data.folds={args.folds}", f"training.iterations_per_epoch={args.iterations}", "training.seed=0",
            f"validation.every_n_epochs={args.epochs}", f"data.cache_dir={tmp / 'cache'}",
            f"sampling.foreground_fraction={args.foreground_fraction}"]  # fmt: skip
    if sparsify is not None:
        sets.append("data.ignore_label=3")
    started = time.perf_counter()
    cpu = _medseg("train", args.pipeline, "--data", str(data), "--out", str(run), "--epochs", str(args.epochs),
                  "--device", "cpu", "--no-progress", *[a for s in sets for a in ("--set", s)], log=tmp / f"{slug}.log")
    train_s = time.perf_counter() - started
    preds = tmp / f"pred-{slug}"
    scans = sorted(str(p) for p in (tmp / "test").glob("volume-*.nii.gz"))
    cpu += _medseg("predict", "--model", str(run), *scans, "--out", str(preds), "--device", "cpu",
                   "--no-preview", "--no-progress", log=tmp / f"{slug}-predict.log")  # fmt: skip
    scored = tmp / f"eval-{slug}"
    cpu += _medseg("evaluate", "--pred", str(preds), "--ref", str(tmp / "test"), "--out", str(scored),
                   "--workers", "1", "--no-figures", log=tmp / f"{slug}-evaluate.log")  # fmt: skip
    table = pd.read_csv(scored / "per_case.csv")
    return {"name": name, "fraction": fraction, "liver": table["liver_dice"].mean(),
            "tumor": table["tumor_dice"].mean(), "train_s": train_s, "cpu_s": cpu}


def run(args) -> list[str]:
    """Phantoms, then per variant: sparsify, train, predict, evaluate; the Markdown lines."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _medseg("phantom", str(tmp / "train"), "--cases", str(args.cases), "--size", args.size, "--seed", "0",
                "--workers", "1", log=tmp / "phantom.log")  # fmt: skip
        _medseg("phantom", str(tmp / "test"), "--cases", str(args.test_cases), "--size", args.size, "--seed", "1",
                "--workers", "1", log=tmp / "phantom-test.log")  # fmt: skip
        for slug in args.variants:
            rows.append(_variant(slug, tmp, args))
            print(rows[-1], flush=True)
    return _table(rows, args)


def _table(rows: list[dict], args) -> list[str]:
    lines = [
        "## Training from partial annotations (`benchmarks/bench_partial.py`)",
        "",
        f"Machine: {machine()}; one core (`taskset -c 1`, `OMP_NUM_THREADS=1`), shared with other jobs.",
        "",
        f"`medseg phantom --cases {args.cases} --size {args.size} --seed 0` (training set, dense labels) and "
        f"`--cases {args.test_cases} --seed 1` (test set); `medseg sparsify` makes the partial copies "
        "(ignore label 3, seed 0); each set trains the same run: `medseg train "
        f"{args.pipeline} --epochs {args.epochs} --set training.iterations_per_epoch={args.iterations} --set "
        f"data.folds={args.folds} --set sampling.foreground_fraction={args.foreground_fraction} --set "
        "data.ignore_label=3` (CPU profile; fold 0 trains "
        f"{args.cases - args.cases // args.folds} of the {args.cases} cases), then "
        "`medseg predict` on the test scans (dense predictions, the run's post-processing) and `medseg evaluate` "
        "against their dense labels: mean Dice over the test cases. Annotated: the share of the training "
        "voxels that are not ignored.",
        "",
        "| labels | annotated voxels | liver Dice | tumor Dice | training wall s | CPU s (train, predict, evaluate) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {100 * r['fraction']:.1f} % | {r['liver']:.3f} | {r['tumor']:.3f} | "
                     f"{r['train_s']:.0f} | {r['cpu_s']:.0f} |")
    lines += ["", f"Re-run: `taskset -c 1 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_partial.py "
              f"--epochs {args.epochs} --iterations {args.iterations} --cases {args.cases}`."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="liver-2d")
    parser.add_argument("--size", default="small", choices=("tiny", "small"))
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--test-cases", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--foreground-fraction", type=float, default=1.0,
                        help="share of foreground-centred patches (default 1: tumors are seen within the budget)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    lines = run(args)
    print("\n".join(lines))
    if not args.no_write:
        write_section("partial", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
