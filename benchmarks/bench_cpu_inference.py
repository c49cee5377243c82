"""Benchmark: the pipeline's GPU-sized network (31.2 M parameters, 128^3 windows) on a CPU, float32 vs bfloat16.

``pipelines/liver.yaml``'s model section (3D U-Net, depth 6, 32..320 filters, deep supervision; the GPU
configuration, no CPU profile) with seeded random weights. Each precision runs in a fresh process (peak
resident memory above its baseline): one warm-up window, then ``--windows`` timed 128^3 windows (batch 1)
cut from a LiTS-size phantom scan (512 x 512 x 300-ish, the ``lits`` phantom) around its liver, in
float32, bfloat16 autocast, and each with ``channels_last_3d``. The case time is an **extrapolation**:
seconds per window times the windows ``medseg predict`` runs on that scan (coarse-to-fine: the coarse pass
at twice the spacing plus the fine windows of the whole-scan grid centred in the reference liver box with
its 15 mm margin; the count is computed, not run). Agreement of the masks of the two precisions is measured
on the timed windows (random weights: argmax voxels equal, Dice of the foreground); the accuracy guard
with trained weights is the phantom test of ``tests/inference/test_cpu.py`` and the ``--trained`` run below.

Re-run: ``nice .venv/bin/python benchmarks/bench_cpu_inference.py`` (``--windows N``; ``--trained RUN`` also
predicts a small phantom with that run in both precisions and reports Dice against the reference). Results
replace the ``cpu-inference`` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WINDOW = (128, 128, 128)
#: nnU-Net's 3d_fullres spacing of LiTS (0.77 mm in-plane, 1 mm slices): the grid a GPU-trained network sees.
TARGET_SPACING_MM = (0.77, 0.77, 1.0)
CONFIGS = {  # name: (bfloat16 autocast, channels_last_3d)
    "float32": (False, False),
    "bfloat16": (True, False),
    "float32 + channels_last_3d": (False, True),
    "bfloat16 + channels_last_3d": (True, True),
}


def gpu_model_config() -> dict:
    """The model section of ``pipelines/liver.yaml`` (no profile) with the LiTS channels."""
    import yaml

    spec = yaml.safe_load((Path(__file__).resolve().parent.parent / "pipelines" / "liver.yaml").read_text())
    return {**spec["model"], "in_channels": 1, "out_channels": 3}


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _child(name: str, windows: np.ndarray, threads: int, queue) -> None:
    """Time ``windows`` (N, 128, 128, 128) one at a time under one configuration, in this fresh process."""
    import torch

    from medseg.models import build_model

    torch.set_num_threads(threads)
    bf16, channels_last = CONFIGS[name]
    torch.manual_seed(0)
    network = build_model(gpu_model_config()).eval()
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    network = network.to(memory_format=fmt)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    base = _rss_kb("VmRSS")

    def forward(x):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = network(x.contiguous(memory_format=fmt))
        return (out[0] if isinstance(out, list | tuple) else out).float()

    forward(torch.zeros(1, 1, *WINDOW))  # warm-up: oneDNN kernels
    times, labels = [], []
    for window in windows:
        t = time.perf_counter()
        logits = forward(torch.from_numpy(window)[None, None])
        times.append(time.perf_counter() - t)
        labels.append(logits[0].argmax(0).to(torch.uint8).numpy())
    queue.put((name, times, (_rss_kb("VmHWM") - base) / 1024, np.stack(labels)))


def run_isolated(name: str, windows: np.ndarray, threads: int):
    ctx = mp.get_context("spawn")  # a fresh interpreter: the parent's OpenMP pool would deadlock a fork
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(name, windows, threads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def phantom_windows(count: int):
    """``count`` normalised 128^3 windows of the LiTS-size phantom around its liver, the preprocessed scan
    and the windows ``medseg predict`` (coarse-to-fine, overlap 0.5) would run on it."""
    from medseg.data import make_phantom
    from medseg.inference.prepare import prepare_scan
    from medseg.inference.sliding_window import grid_windows_for_box, plan_windows
    from medseg.preprocessing import PreprocessingPlan, preprocess_label

    case = make_phantom(size="lits", seed=0, index=0)
    plan = PreprocessingPlan.window(TARGET_SPACING_MM, (-150.0, 250.0))
    image, record, mask = prepare_scan(case.image, plan)
    label = preprocess_label(case.label, record)
    liver = np.argwhere(label > 0)
    lo, hi = liver.min(0), liver.max(0) + 1
    centre = (lo + hi) // 2
    starts = [[int(np.clip(c - w // 2 + k * w // 2 * (a == 0), 0, n - w)) for a, (c, w, n) in
               enumerate(zip(centre, WINDOW, image.shape))] for k in range(count)]  # fmt: skip
    windows = np.stack([image[tuple(slice(s, s + w) for s, w in zip(st, WINDOW))] for st in starts])
    spacing = np.asarray(record.spacing_after_mm)
    margin = np.ceil(15.0 / spacing).astype(int)
    box = [slice(max(0, a - m), min(n, b + m)) for a, b, m, n in zip(lo, hi, margin, image.shape)]
    box_shape = [max(s.stop - s.start, w) for s, w in zip(box, WINDOW)]
    tiles, _ = plan_windows(box_shape, WINDOW, overlap=0.5)
    body = np.ones(image.shape, bool) if mask is None else np.asarray(mask)
    coarse_mask = body[::2, ::2, ::2]
    coarse, _ = plan_windows(_padded(coarse_mask).shape, WINDOW, overlap=0.0, mask=_padded(coarse_mask))
    full, _ = plan_windows(_padded(body).shape, WINDOW, overlap=0.5, mask=_padded(body))
    reach = grid_windows_for_box(full, box, WINDOW, placement="reach")
    fine = grid_windows_for_box(full, box, WINDOW, placement="centred")  # the default fine pass
    info = {"scan_shape": case.image.shape, "spacing_mm": tuple(round(float(s), 2) for s in case.image.spacing_mm),
            "preprocessed_shape": image.shape, "coarse_windows": len(coarse), "fine_windows": len(fine),
            "reach_windows": len(reach), "tile_windows": len(tiles), "full_windows": len(full)}
    return windows.astype(np.float32), info


def _padded(mask: np.ndarray) -> np.ndarray:
    """``mask`` padded with False to at least one window per axis (as the sliding window pads the image)."""
    return np.pad(mask, [(0, max(0, w - n)) for n, w in zip(mask.shape, WINDOW)])


def trained_check(run: str) -> dict:
    """Dice of ``medseg``'s Predictor (a trained run) in float32 and bfloat16 on a small phantom."""
    from medseg.data import make_phantom
    from medseg.inference.predictor import InferenceSettings, Predictor

    case = make_phantom(size="small", seed=1, index=0)
    out = {}
    for precision in ("float32", "bfloat16"):
        predictor = Predictor.from_run(run, device="cpu", settings=InferenceSettings(precision=precision))
        t = time.perf_counter()
        labels, _ = predictor.predict(case.image)
        seconds = time.perf_counter() - t
        dice = {}
        for name, region in (("liver", (1, 2)), ("tumor", (2,))):
            p, r = np.isin(labels.array, region), np.isin(case.label.array, region)
            dice[name] = 2 * np.count_nonzero(p & r) / max(1, np.count_nonzero(p) + np.count_nonzero(r))
        out[precision] = (seconds, dice)
    return out


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=2, help="timed 128^3 windows per configuration")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ", ".join(CONFIGS))
    parser.add_argument("--trained", default=None, metavar="RUN", help="also check a trained run's Dice")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update docs/benchmarks.md")
    args = parser.parse_args(argv)
    from _report import machine, write_section

    from medseg.inference.cpu import cpu_bf16_flags, physical_cores, resolve_precision

    threads = physical_cores()
    load_before = os.getloadavg()[0]
    windows, info = phantom_windows(args.windows)
    print(info, flush=True)
    results = {}
    for name in args.configs.split(","):
        results[name] = run_isolated(name, windows, threads)
        print(name, [f"{t:.1f}" for t in results[name][1]], f"{results[name][2]:.0f} MB", flush=True)
    import torch

    from medseg.models import build_model

    params = sum(p.numel() for p in build_model(gpu_model_config()).parameters()) / 1e6
    case_windows = info["coarse_windows"] + info["fine_windows"]
    ref_labels = results["float32"][3]
    lines = [
        "## CPU inference: the GPU-sized network, float32 vs bfloat16 (`benchmarks/bench_cpu_inference.py`)",
        "",
        f"Machine: {machine()}; CPU bfloat16 flags: {', '.join(cpu_bf16_flags()) or 'none'}; "
        f"`--precision auto` here: {resolve_precision('auto', 'cpu')}; {threads} threads; load average "
        f"{load_before:.1f} -> {os.getloadavg()[0]:.1f} (shared, loaded machine: absolute times scale with the "
        "load, ratios are from the same run).",
        "",
        f"Network: `pipelines/liver.yaml`'s model (no CPU profile): {params:.1f} M parameters, 128^3 windows, "
        f"random weights (seed 0). Scan: the LiTS-size phantom, {info['scan_shape']} at {info['spacing_mm']} mm "
        f"(preprocessed at {TARGET_SPACING_MM} mm: {info['preprocessed_shape']}). `medseg predict` "
        "(coarse-to-fine, overlap 0.5) runs "
        f"{info['coarse_windows']} coarse + {info['fine_windows']} fine windows on it (computed; a full-resolution "
        f"run: {info['full_windows']}). Timed: {args.windows} window(s) around the liver per configuration, batch "
        "1, after a warm-up, each configuration in a fresh process.",
        "",
        "| configuration | s / window | case estimate (min) | peak extra MB | argmax equal to float32 | "
        "foreground Dice vs float32 |",
        "|---|---|---|---|---|---|",
    ]
    for name, (_, times, mem, labels) in results.items():
        per = float(np.median(times))
        lines.append(f"| {name} | {per:.1f} | {per * case_windows / 60:.1f} (extrapolated) | {mem:.0f} | "
                     f"{100 * np.mean(labels == ref_labels):.2f}% | {_dice(labels > 0, ref_labels > 0):.4f} |")
    if args.trained:
        check = trained_check(args.trained)
        lines += ["", f"Trained weights (`{args.trained}`, the small CPU-profile network) on a small phantom, "
                  "`Predictor.predict` in both precisions:", "",
                  "| precision | seconds | liver Dice | tumor Dice |", "|---|---|---|---|"]
        for precision, (seconds, dice) in check.items():
            lines.append(f"| {precision} | {seconds:.1f} | {dice['liver']:.4f} | {dice['tumor']:.4f} |")
    per32 = float(np.median(results["float32"][1]))
    lines += ["", f"Goal: a LiTS-size case in <= 3 min on 2 cores: float32 {per32 * case_windows / 60:.1f} min "
              "(extrapolated). " + _verdict(results, case_windows)]
    markdown = "\n".join(lines)
    print(markdown)
    del torch
    if not args.no_write:
        write_section("cpu-inference", markdown)
    return 0


def _verdict(results: dict, case_windows: int) -> str:
    from medseg.inference.cpu import cpu_bf16_flags

    best = min(results, key=lambda n: np.median(results[n][1]))
    minutes = float(np.median(results[best][1])) * case_windows / 60
    if minutes <= 3:
        return f"Met with {best} ({minutes:.1f} min)."
    reason = ("this CPU has no native bfloat16 (no amx_bf16 / avx512_bf16 flag), so oneDNN emulates bfloat16 and "
              "`--precision auto` keeps float32" if not cpu_bf16_flags() else "the windows are compute-bound")
    return f"Missed: best {best} at {minutes:.1f} min; {reason}."


if __name__ == "__main__":
    sys.exit(main())
