"""Benchmark: `medseg predict` with PyTorch against OpenVINO (float32, bfloat16), file to file (issue 27).

Run as users run it: each configuration is one `medseg predict` command in a fresh process on a LiTS-size
phantom scan (NIfTI in, label map out), side by side in one run, with one shared converted-network cache
(``--cache-dir``) that starts empty:

1. ``openvino float32 (cold cache)``: converts the network (the time it logs) and predicts;
2. ``openvino float32``: the same command again: the converted network read from the cache and compiled;
3. ``openvino bfloat16``: read from the cache, compiled for bfloat16 (native AMX / AVX512-BF16 where the
   CPU has it; where it has not, OpenVINO emulates it and the row says so);
4. ``torch float32`` (``--runtime torch --precision float32``): the reference.

Per command: wall seconds (imports included), the case's seconds (``run.json``'s ``timings_s``: read,
predict, write), peak resident memory (``VmHWM`` of the process), and the label map against PyTorch
float32's (voxels equal, liver and tumor Dice). Conversion and compile seconds come from the predictor's
log lines. Networks (seeded random weights by default: speed figures; the accuracy guard with trained weights
is ``tests/inference/test_runtime_openvino.py``; ``--trained RUN`` runs a trained run folder's weights instead,
with the network's window, so that the coarse pass finds the liver and the fine pass runs the windows a real
model runs, not the whole scan):

- ``cpu`` (default): ``pipelines/liver.yaml``'s CPU profile, 0.35 M parameters, 96 x 96 x 16 windows at
  3.11 x 3.11 x 5 mm;
- ``gpu`` (``--network gpu``): the pipeline's GPU-sized network, 31.2 M parameters, 128^3 windows at
  0.77 x 0.77 x 1 mm (PyTorch needs about 13-30 s per window on 1-2 threads: tens of minutes; run it alone).

Re-run: ``taskset -c 1 .venv/bin/python benchmarks/bench_openvino.py [--network gpu] [--threads 1]
[--trained RUN]``;
results replace the ``openvino-<network>`` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

#: (label, --runtime, --precision); the first runs with the cache empty.
CONFIGS = [("openvino float32 (cold cache)", "openvino", "float32"), ("openvino float32", "openvino", "float32"),
           ("openvino bfloat16", "openvino", "bfloat16"), ("torch float32", "torch", "float32")]

#: Network, window and preprocessing spacing of each benchmarked model.
NETWORKS = {
    "cpu": ({"depth": 4, "base_filters": 8, "strides": [[1, 1, 1], [2, 2, 1], [2, 2, 2], [2, 2, 2]]},
            (96, 96, 16), (3.11, 3.11, 5.0)),
    "gpu": ({}, (128, 128, 128), (0.77, 0.77, 1.0)),
}



def _run(work: Path, network: str) -> Path:
    """A run folder holding ``network``'s model with seeded random weights and a plan for the phantom."""
    import torch
    import yaml

    from medseg.models import build_model
    from medseg.preprocessing import PreprocessingPlan
    from medseg.runs.checkpoint import save_checkpoint

    run = work / f"untrained-{network}"
    if (run / "best.pt").exists():
        return run
    overrides, patch, spacing = NETWORKS[network]
    spec = yaml.safe_load((ROOT / "pipelines" / "liver.yaml").read_text())
    config = {**spec["model"], **overrides, "in_channels": 1, "out_channels": 3}
    torch.manual_seed(0)
    save_checkpoint(run / "best.pt", {
        "model": build_model(config).state_dict(), "model_config": config,
        "plan": PreprocessingPlan(spacing, "ct_zscore", (-60.0, 180.0), 60.0, 40.0).to_dict(), "config": {},
        "inference": {"patch_size": list(patch), "context_slices": 0, "spatial_dims": 3, "num_classes": 3,
                      "postprocessing": {}}})  # fmt: skip
    return run


def _trained_run(work: Path, network: str, trained: Path) -> Path:
    """A run folder holding ``trained``'s best checkpoint with ``network``'s inference window (the network is
    fully convolutional: a run trained on smaller patches predicts with the pipeline's windows)."""
    import torch

    from medseg.runs.checkpoint import save_checkpoint

    path = trained / "best.pt" if trained.is_dir() else trained  # a run folder, or one of its checkpoints
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    _, patch, _ = NETWORKS[network]
    checkpoint["inference"] = {**checkpoint["inference"], "patch_size": list(patch)}
    run = work / f"trained-{network}"
    save_checkpoint(run / "best.pt", checkpoint)
    return run


def _predict(run: Path, scan: Path, out: Path, cache: Path, runtime: str, precision: str, threads: int) -> dict:
    """One `medseg predict` in a fresh process; its timings, memory and conversion/compile log lines."""
    from _predict_child import PREDICT_CHILD

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", PREDICT_CHILD, "predict", "--model", str(run), str(scan), "--out", str(out),
               "--device", "cpu", "--runtime", runtime, "--precision", precision, "--cache-dir", str(cache),
               "--no-preview", "--no-volumes"]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"medseg predict failed ({runtime} {precision}):\n{proc.stderr[-3000:]}")
    result = json.loads(line[6:])
    manifest = json.loads((out / "run.json").read_text())
    case = manifest["cases"][0]
    result.update(wall_s=wall, case_s=sum(case["timings_s"].values()), compute=manifest["settings"]["compute"])
    converted = re.search(r"converted the network to OpenVINO in ([\d.]+) s .*compiled in ([\d.]+) s", proc.stderr)
    cached = re.search(r"read from the cache in ([\d.]+) s, compiled \(\w+\) in ([\d.]+) s", proc.stderr)
    if converted:
        result.update(convert_s=float(converted.group(1)), compile_s=float(converted.group(2)))
    elif cached:
        result.update(read_s=float(cached.group(1)), compile_s=float(cached.group(2)))
    return result


def _agreement(labels, reference) -> dict:
    import numpy as np

    def dice(a, b):
        total = np.count_nonzero(a) + np.count_nonzero(b)
        return 1.0 if total == 0 else 2.0 * np.count_nonzero(a & b) / total

    return {"equal": float(np.mean(labels == reference)), "liver": dice(labels > 0, reference > 0),
            "tumor": dice(labels == 2, reference == 2)}


def _windows_s(row: dict) -> float:
    """Seconds of the sliding-window passes (coarse + fine: the network and blending), from the predictor's
    statistics."""
    return row["steps"].get("coarse_s", 0.0) + row["steps"]["fine_s"]


def _table(rows: dict, reference: str) -> str:
    lines = ["| configuration | command s | case s | windows | windows s | speed-up (windows) | peak MB | convert s "
             "| compile s | voxels equal | liver Dice | tumor Dice |", "|---" * 12 + "|"]
    base = _windows_s(rows[reference])
    for name, r in rows.items():
        a = r["agreement"]
        lines.append(f"| {name} | {r['wall_s']:.1f} | {r['case_s']:.1f} | {r['steps'].get('windows', '-')} "
                     f"| {_windows_s(r):.1f} "
                     f"| {base / _windows_s(r):.2f}x "
                     f"| {r['peak_mb']:.0f} | {r.get('convert_s', '-')} | {r.get('compile_s', '-')} "
                     f"| {100 * a['equal']:.3f}% "
                     f"| {a['liver']:.4f} | {a['tumor']:.4f} |")
    return "\n".join(lines)


def _weights_line(trained: Path | None) -> str:
    if trained is None:
        return ("seeded random weights (speed; the trained-weights accuracy guard is "
                "`tests/inference/test_runtime_openvino.py`)")
    import json

    import yaml

    run, name = (trained, "best.pt") if trained.is_dir() else (trained.parent, trained.name)
    config = yaml.safe_load((run / "config.yaml").read_text())
    data = json.loads((run / "data.json").read_text())["training_data"]
    t, metrics = config["training"], (run / "metrics.csv").read_text().strip().splitlines()
    return (f"the trained weights of `{run}` (`{name}` of pipeline `{config['name']}`: {len(metrics) - 1} "
            f"epochs of {t['iterations_per_epoch']} iterations, batch {t['batch_size']}, patch "
            f"{tuple(t['patch_size'])}, {config['optimizer']['name']} lr {config['optimizer']['lr']}, on "
            f"{data['n_cases']} training cases of `{data['name']}`; predicted with the window below)")


def _section(network: str, rows: dict, info: dict, threads: int, trained: Path | None = None) -> str:
    from _report import machine

    from medseg.inference.cpu import cpu_bf16_flags

    _, patch, spacing = NETWORKS[network]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    native = "native (" + ", ".join(cpu_bf16_flags()) + ")" if cpu_bf16_flags() else "EMULATED (no native flag)"
    bf16 = rows["openvino bfloat16"]["case_s"]
    return f"""## `medseg predict` on OpenVINO vs PyTorch, {network} network (`benchmarks/bench_openvino.py`)

Machine: {machine()}; {threads} thread(s), pinned by the caller; load average {load:.1f}
(shared machine: ratios are from the same run). bfloat16 here: {native}.

Network: `pipelines/liver.yaml`{"'s CPU profile" if network == "cpu" else " (GPU size)"}, window {patch} at
{spacing} mm, {_weights_line(trained)}. Scan: LiTS-size phantom {info['shape']} (seed 100, case 0).
Each row is one `medseg predict` command in a fresh process, in this order, sharing one converted-network
cache that starts empty; agreement is against `torch float32`'s label map.

{_table(rows, "torch float32")}

"case s": read, predict and write of the case (`run.json`); "windows s": its coarse and fine sliding-window
passes (the predictor's `coarse_s + fine_s`: the network and the blending; the conversion or cache read and
the compile of a first scan are before them, in their own columns). The rest of the case is reading,
preprocessing, restoring to the scan grid, post-processing and writing, the same code for every runtime.
OpenVINO bfloat16 against PyTorch float32: {_windows_s(rows["torch float32"]) / _windows_s(
rows["openvino bfloat16"]):.2f}x on the windows, {rows["torch float32"]["case_s"] / bf16:.2f}x on the case
(run.json: runtime `{rows["openvino bfloat16"]["compute"]["runtime"]}`, OpenVINO
{(rows["openvino bfloat16"]["compute"]["openvino"] or "").split("-")[0]}).
{_goal_lines(rows, native != "EMULATED (no native flag)") if network == "gpu" else ""}"""


def _goal_lines(rows: dict, native: bool) -> str:
    """Issue 27's goal for the GPU-sized network: a LiTS-size case in <= 3 min on 2 cores with native bfloat16,
    <= 6 min without (where ``--precision auto`` runs float32); whole commands, imports included."""
    bf16, fp32 = rows["openvino bfloat16"]["wall_s"], rows["openvino float32"]["wall_s"]
    verdict = "met" if bf16 <= 180 else "not met"
    line = (f"\nGoal (LiTS-size case, 31.2 M network, <= 3 min with native bfloat16): "
            f"{bf16 / 60:.1f} min, **{verdict if native else 'not measured: this CPU has no native bfloat16'}**. ")
    line += (f"Without native bfloat16 `--precision auto` runs float32: OpenVINO float32 took {fp32 / 60:.1f} min "
             f"here (goal <= 6 min: **{'met' if fp32 <= 360 else 'not met'}** on this CPU's float32 units; a CPU "
             "without bfloat16, e.g. an AMD EPYC, was not measured).")
    return line + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", choices=sorted(NETWORKS), default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/medseg-bench-openvino"))
    parser.add_argument("--no-write", action="store_true", help="print the section, leave docs/benchmarks.md alone")
    parser.add_argument("--trained", type=Path,
                        help="a trained run folder of --network's architecture (its best.pt), or a checkpoint of one")
    args = parser.parse_args()
    import shutil

    from bench_inference import _scan

    from medseg.io import read_volume

    scan, _, info = _scan(args.work, 0, 100)
    run = _run(args.work, args.network) if args.trained is None else _trained_run(args.work, args.network,
                                                                                  args.trained)
    cache = args.work / f"ov-cache-{args.network}"
    shutil.rmtree(cache, ignore_errors=True)
    rows, labels = {}, {}
    for name, runtime, precision in CONFIGS:
        out = args.work / f"out-{args.network}-{name.replace(' ', '-').replace('(', '').replace(')', '')}"
        shutil.rmtree(out, ignore_errors=True)
        rows[name] = _predict(run, scan, out, cache, runtime, precision, args.threads)
        labels[name] = read_volume(next(out.glob("*_seg.nii.gz"))).array
        print(name, {k: v for k, v in rows[name].items() if k != "compute"}, flush=True)
    for name in rows:
        rows[name]["agreement"] = _agreement(labels[name], labels["torch float32"])
    info["shape"] = tuple(read_volume(scan).shape)
    text = _section(args.network, rows, info, args.threads, args.trained)
    print(text)
    if not args.no_write:
        from _report import write_section

        write_section(f"openvino-{args.network}", text)


if __name__ == "__main__":
    main()
