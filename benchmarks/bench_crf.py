"""Benchmark: the dense CRF post-processing step (``medseg predict --crf``, issue 32): cost and effect.

1. **Cost on a LiTS-size scan**: a phantom scan of 512 x 512 x ~300 voxels (``make_phantom(size="lits")``,
   as ``bench_openvino.py``), one ``medseg predict`` per configuration in a fresh process (``--crf`` and
   without, same model, ``--runtime torch --precision float32``): the command's seconds, the predictor's
   restore + post-processing seconds (the CRF is in them), and peak resident memory (``VmHWM``).
2. **Effect on Dice**: liver and tumor Dice with and without the CRF (the run's other steps either way) on
   fresh ``small`` phantom cases that the model never saw, through the predictor (the code of ``medseg
   predict``).

The model: ``pipelines/liver.yaml`` (CPU profile) trained briefly on ``small`` phantoms (the seconds and
epochs are in the section). Pinned to one core and one thread by the caller.

Re-run: ``taskset -c 1 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_crf.py [--epochs 8]``;
results replace the ``crf`` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))



def _train(work: Path, epochs: int, iterations: int) -> tuple[Path, float]:
    """The liver pipeline trained on 8 ``small`` phantoms (fold 0 of 2); returns the run and its seconds."""
    from medseg.cli import main
    from medseg.data import write_phantom_dataset

    run, data = work / "run", work / "train-data"
    record = work / "train.json"
    if (run / "last.pt").exists() and record.exists():
        return run, json.loads(record.read_text())["seconds"]
    write_phantom_dataset(data, cases=8, size="small", seed=0, workers=1, progress=False)
    t0 = time.perf_counter()
    code = main(["train", "liver", "--data", str(data), "--fold", "0", "--out", str(run), "--device", "cpu",
                 "--epochs", str(epochs), "--no-progress", "--set", "data.folds=2", "--set",
                 f"training.iterations_per_epoch={iterations}", "--set", "training.workers=0"])  # fmt: skip
    if code != 0:
        raise SystemExit(f"training failed ({code})")
    seconds = time.perf_counter() - t0
    record.write_text(json.dumps({"seconds": seconds, "epochs": epochs, "iterations": iterations}))
    return run, seconds


def _predict(run: Path, scan: Path, out: Path, crf: bool) -> dict:
    """One ``medseg predict`` in a fresh process (one thread): seconds, the predictor's steps, peak MB."""
    from _predict_child import PREDICT_CHILD

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", PREDICT_CHILD, "predict", "--model", str(run), str(scan), "--out", str(out),
               "--device", "cpu", "--runtime", "torch", "--precision", "float32", "--no-preview", "--no-volumes",
               *(["--crf"] if crf else [])]  # fmt: skip
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"medseg predict failed (crf={crf}):\n{proc.stderr[-3000:]}")
    return json.loads(line[6:])


def _dice(a, b) -> float:
    import numpy as np

    total = np.count_nonzero(a) + np.count_nonzero(b)
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(a & b) / total


def _dice_rows(run: Path, seed: int, cases: int) -> list[dict]:
    """Liver/tumor Dice without and with the CRF on fresh ``small`` phantoms (the run's other steps both ways)."""
    import dataclasses

    from medseg.data import make_phantom
    from medseg.inference.crf import CrfSettings
    from medseg.inference.predictor import InferenceSettings, Predictor

    settings = InferenceSettings(runtime="torch", precision="float32")
    plain = Predictor.from_run(run, device="cpu", settings=settings)
    steps = dataclasses.replace(plain.postprocessing, crf=CrfSettings())
    with_crf = plain.with_settings(postprocessing=steps)
    rows = []
    for index in range(cases):
        case = make_phantom(size="small", seed=seed, index=index)
        ref = case.label.array
        row = {"case": index, "shape": list(case.image.shape)}
        for name, predictor in (("plain", plain), ("crf", with_crf)):
            t0 = time.perf_counter()
            labels = predictor(case.image).array
            row[name] = {"liver": _dice(labels > 0, ref > 0), "tumor": _dice(labels == 2, ref == 2),
                         "seconds": time.perf_counter() - t0}  # fmt: skip
        rows.append(row)
    return rows


def _lits_scan(work: Path, seed: int) -> tuple[Path, tuple[int, ...]]:
    from medseg.data import make_phantom, write_phantom_case

    folder = work / f"lits-seed{seed}"
    scan = folder / "volume-0.nii.gz"
    case = None if scan.exists() else make_phantom(size="lits", seed=seed, index=0)
    if case is not None:
        write_phantom_case(case, folder)
    import nibabel as nib

    return scan, tuple(nib.load(scan).shape)


def _section(info: dict, cost: dict, rows: list[dict]) -> str:
    from _report import machine

    lines = ["## Dense CRF (`medseg predict --crf`; `benchmarks/bench_crf.py`)", "",
             f"Machine: {machine()}; 1 thread, pinned by the caller (shared machine).", "",
             f"Model: `pipelines/liver.yaml` (CPU profile) trained {info['epochs']} epochs x {info['iterations']} "
             f"iterations on 8 `small` phantoms (fold 0 of 2): {info['seconds'] / 60:.1f} min on one thread. "
             "CRF: default `CrfSettings` (5 iterations, smoothness 2 mm, appearance 8 mm / 15 HU, weights 1 and 3).",
             "", f"Cost, LiTS-size phantom scan {info['lits_shape']} (seed {info['seed']}), one `medseg predict` "
             "per row in a fresh process, `--runtime torch --precision float32`:", "",
             "| configuration | command s | restore + post-processing s | peak MB (VmHWM) |",
             "|---|---|---|---|"]  # fmt: skip
    for name, r in cost.items():
        lines.append(f"| {name} | {r['seconds']:.1f} | {r['steps'].get('restore_postprocess_s', float('nan')):.1f} "
                     f"| {r['peak_mb']:.0f} |")  # fmt: skip
    lines += ["", f"Dice on {len(rows)} fresh `small` phantoms (seed {info['dice_seed']}; the run's other "
              "post-processing steps in both columns):", "",
              "| case | liver Dice | liver Dice + CRF | tumor Dice | tumor Dice + CRF | CRF s |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        extra = r["crf"]["seconds"] - r["plain"]["seconds"]
        lines.append(f"| {r['case']} | {r['plain']['liver']:.4f} | {r['crf']['liver']:.4f} "
                     f"| {r['plain']['tumor']:.4f} | {r['crf']['tumor']:.4f} | {extra:.1f} |")  # fmt: skip
    mean = {(c, k): sum(r[c][k] for r in rows) / len(rows) for c in ("plain", "crf") for k in ("liver", "tumor")}
    lines.append(f"| mean | {mean['plain', 'liver']:.4f} | {mean['crf', 'liver']:.4f} | {mean['plain', 'tumor']:.4f} "
                 f"| {mean['crf', 'tumor']:.4f} | |")  # fmt: skip
    d_liver, d_tumor = mean["crf", "liver"] - mean["plain", "liver"], mean["crf", "tumor"] - mean["plain", "tumor"]
    plain, crf = cost["without CRF"], cost["--crf"]
    lines += ["", f"Reading: on this phantom the CRF moves mean liver Dice by {d_liver:+.4f} and mean tumor Dice "
              f"by {d_tumor:+.4f} (a tumor Dice of 1 is a case where neither the reference nor the prediction has "
              "a tumor). On the LiTS-size scan it adds "
              f"{crf['steps'].get('restore_postprocess_s', 0) - plain['steps'].get('restore_postprocess_s', 0):.0f} s "
              f"and {crf['peak_mb'] - plain['peak_mb']:.0f} MB of peak memory to the command "
              "(the liver box's probabilities and the mean-field arrays; the scan's probabilities are never "
              "restored whole)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/medseg-bench-crf"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=25, help="training iterations per epoch")
    parser.add_argument("--cases", type=int, default=4, help="fresh small phantoms for the Dice table")
    parser.add_argument("--seed", type=int, default=100, help="the LiTS-size phantom's seed")
    parser.add_argument("--no-doc", action="store_true", help="print the section, do not write docs/benchmarks.md")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    run, seconds = _train(args.work, args.epochs, args.iterations)
    scan, shape = _lits_scan(args.work, args.seed)
    cost = {name: _predict(run, scan, args.work / ("out-crf" if crf else "out-plain"), crf) for name, crf in
            (("without CRF", False), ("--crf", True))}  # fmt: skip
    rows = _dice_rows(run, seed=7, cases=args.cases)
    info = {"epochs": args.epochs, "iterations": args.iterations, "seconds": seconds, "lits_shape": shape,
            "seed": args.seed, "dice_seed": 7}
    (args.work / "results.json").write_text(json.dumps({"info": info, "cost": cost, "dice": rows}, indent=1))
    text = _section(info, cost, rows)
    print(text)
    if not args.no_doc:
        from _report import write_section

        write_section("crf", text)


if __name__ == "__main__":
    main()
