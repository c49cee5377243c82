"""Benchmark: `medseg predict` against a plain MONAI sliding window over the whole resampled scan.

On one LiTS-size phantom scan (512 x 512 x N, written as NIfTI), each method runs in a fresh process
(clean peak RSS) with one CPU thread (or the GPU when present), from loading the model and reading the
file to writing the label map (imports excluded):

* ``monai``: read, the run's preprocessing, ``monai.inferers.sliding_window_inference`` (Gaussian,
  same window, overlap and batch) over the whole resampled scan, ``restore_to_scan`` + argmax, the same
  post-processing, write;
* ``medseg-full``: ``medseg predict --mode full`` (air windows skipped);
* ``medseg``: ``medseg predict`` with its defaults (coarse-to-fine, air windows skipped).

Same network and weights for all; Dice of each against the phantom's reference labels. Results go to
``docs/benchmarks.md`` (section "inference").

``--accuracy`` measures instead what the speed-ups cost: per-case Dice of every mode (default
coarse-to-fine, ``--tta``) against ``--mode full`` on held-out cases of two phantom sizes, with the worst
case (:mod:`_accuracy`; section "inference-accuracy").

Usage::

    python benchmarks/bench_inference.py --model runs/liver/fold0          # a trained run (recommended)
    python benchmarks/bench_inference.py                                   # untrained liver CPU model
    python benchmarks/bench_inference.py --model runs/liver/fold0 --accuracy   # per-case Dice of every mode
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def _rss_mb() -> float:
    """Peak resident memory of this process image in MB: ``VmHWM`` (``ru_maxrss`` would include the
    parent's resident size at fork time, which survives ``exec``)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:  # not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


# ------------------------------------------------------------------------------------------------
# workers (one method per fresh process)


def _worker_monai(args) -> dict:
    import torch
    from monai.inferers import sliding_window_inference

    from medseg.inference import Predictor
    from medseg.inference.postprocess import postprocess_labels
    from medseg.io import read_volume, write_volume
    from medseg.preprocessing import preprocess_image, restore_to_scan

    torch.set_num_threads(1)
    base = _current_rss_mb()  # after imports, before the model loads (as for medseg predict)
    t0 = time.perf_counter()
    predictor = Predictor.from_run(args.model, device=args.device)
    volume = read_volume(args.scan)
    image, record = preprocess_image(volume, predictor.plan)
    t1 = time.perf_counter()
    with torch.inference_mode(), torch.autocast(device_type=predictor.device.type, dtype=torch.float16,
                                                enabled=predictor.device.type == "cuda"):
        logits = sliding_window_inference(
            torch.from_numpy(image)[None, None].to(predictor.device), tuple(predictor.patch_size), 2,
            predictor.network, overlap=args.overlap, mode="gaussian",
        )[0].float()
    t2 = time.perf_counter()
    labels = restore_to_scan(logits, record).argmax(0).astype("uint8")
    del logits
    labels = postprocess_labels(labels, spacing_mm=volume.spacing_mm, config=predictor.postprocessing)
    write_volume(volume.with_array(labels), args.out, label=True)
    t3 = time.perf_counter()
    return {"seconds": t3 - t0, "network_s": t2 - t1, "base_rss_mb": base, "runtime": "torch",
            "precision": "float32" if predictor.device.type == "cpu" else "float16"}


def _worker_medseg(args, mode: str) -> dict:
    import torch

    import medseg.data.discovery
    import medseg.inference.batch
    import medseg.inference.predictor
    import medseg.io
    import medseg.models
    import medseg.preprocessing
    import medseg.runs.checkpoint  # noqa: F401  (imports outside the timed call, as for monai)
    from medseg.cli import main

    torch.set_num_threads(1)
    base = _current_rss_mb()  # before the model loads: medseg predict loads it inside the timed call
    out_dir = Path(args.out).parent / f"pred-{mode}"
    t0 = time.perf_counter()
    code = main(["predict", "--model", str(args.model), str(args.scan), "--out", str(out_dir), "--mode", mode,
                 "--overlap", str(args.overlap), "--device", args.device, "--no-volumes", "--no-preview",
                 "--no-progress"])  # the label map only, as the monai method writes
    seconds = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"medseg predict failed with code {code}")
    produced = next(out_dir.glob("*_seg.nii.gz"))
    os.replace(produced, args.out)
    compute = json.loads((out_dir / "run.json").read_text())["settings"]["compute"]  # what predict chose
    return {"seconds": seconds, "base_rss_mb": base, "runtime": compute["runtime"], "precision": compute["precision"]}


# ------------------------------------------------------------------------------------------------
# driver


def _scan(work: Path, index: int, seed: int) -> tuple[Path, Path, dict]:
    from medseg.data import make_phantom, write_phantom_case

    folder = work / f"lits-seed{seed}-case{index}"
    info_path = folder / "info.json"
    if not info_path.exists():
        case = make_phantom(size="lits", seed=seed, index=index)
        entry = write_phantom_case(case, folder)
        info_path.write_text(json.dumps(entry))
    info = json.loads(info_path.read_text())
    return folder / info["image"], folder / info["label"], info


def _untrained_run(work: Path) -> Path:
    """The liver pipeline's CPU model, untrained, with a plan for the phantom (speed figures only)."""
    import torch

    from medseg.models import build_model
    from medseg.preprocessing import PreprocessingPlan
    from medseg.runs.checkpoint import save_checkpoint

    run = work / "untrained-liver"
    if (run / "best.pt").exists():
        return run
    config = {"name": "unet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3, "depth": 4,
              "base_filters": 8, "max_filters": 320, "norm": "instance", "deep_supervision": True}
    torch.manual_seed(0)
    save_checkpoint(run / "best.pt", {
        "model": build_model(config).state_dict(), "model_config": config,
        "plan": PreprocessingPlan((3.0, 3.0, 5.0), "ct_zscore", (-60.0, 180.0), 60.0, 40.0).to_dict(),
        "config": {}, "inference": {"patch_size": [64, 64, 32], "context_slices": 0, "spatial_dims": 3,
                                    "num_classes": 3, "postprocessing": {}}})
    return run


def _dice(pred, ref, cls: int) -> float:
    a, b = pred >= cls, ref >= cls
    denom = a.sum() + b.sum()
    return float(2 * (a & b).sum() / denom) if denom else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="run folder or checkpoint (default: untrained)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/medseg-bench-inference"))
    parser.add_argument("--index", type=int, default=0, help="phantom case index (0: 512x512x298 at 1 mm)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per method (fastest time, largest peak)")
    parser.add_argument("--seed", type=int, default=100, help="phantom seed (not a training seed)")
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--methods", default="monai,medseg-full,medseg")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--accuracy", action="store_true", help="per-case Dice of every mode vs --mode full")
    parser.add_argument("--fresh", default="small:7:0,1,2,3;lits:100:0,1",
                        help="--accuracy: fresh phantom cases, size:seed:indices;... (default %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="--accuracy: also write the rows as JSON")
    parser.add_argument("--modes", default="full,default,reach,tile,tta", help="--accuracy: modes (all for the table)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--scan", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        result = _worker_monai(args) if args.worker == "monai" else _worker_medseg(
            args, "full" if args.worker == "medseg-full" else "coarse-to-fine")
        result["peak_rss_mb"] = _rss_mb()
        args.result.write_text(json.dumps(result))
        return

    import numpy as np

    from medseg.io import read_volume

    args.work.mkdir(parents=True, exist_ok=True)
    if args.accuracy:
        _accuracy_main(args)
        return
    t0 = time.perf_counter()
    scan, label, info = _scan(args.work, args.index, args.seed)
    print(f"scan {scan} {info['shape']} spacing {info['spacing_mm']} ({time.perf_counter() - t0:.0f} s)", flush=True)
    model = args.model or _untrained_run(args.work)
    ref = np.asarray(read_volume(label).array)
    scan_mb = float(np.prod(info["shape"])) * 2 / 2**20  # int16 in memory
    results = {}
    for method in args.methods.split(","):
        out = args.work / f"{method}_seg.nii.gz"
        result_path = args.work / f"{method}.json"
        cmd = [sys.executable, __file__, "--worker", method, "--model", str(model), "--scan", str(scan), "--out",
               str(out), "--result", str(result_path), "--overlap", str(args.overlap), "--device", args.device]
        runs = []
        for _ in range(max(1, args.repeat)):
            subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            runs.append(json.loads(result_path.read_text()))
        res = min(runs, key=lambda r: r["seconds"])
        res["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        res["base_rss_mb"] = min(r["base_rss_mb"] for r in runs)
        pred = np.asarray(read_volume(out).array)
        res["dice_liver"], res["dice_tumor"] = _dice(pred, ref, 1), _dice(pred, ref, 2)
        results[method] = res
        print(method, json.dumps(res), flush=True)
    _report(results, info, scan_mb, model, args, _describe(model))


def _accuracy_main(args) -> None:
    """``--accuracy``: every mode on held-out cases, one table (see :mod:`_accuracy`)."""
    import _accuracy
    from _report import machine, write_section

    if args.model is None:
        raise SystemExit("--accuracy needs --model (a trained run)")
    cases = _accuracy.held_out_cases(args.model, args.work, fresh=_accuracy.parse_fresh(args.fresh))
    rows = _accuracy.measure(args.model, cases, args.work, device=args.device, modes=args.modes.split(","),
                             json_path=args.json)
    if args.modes != ",".join(_accuracy.MODES):
        return  # a partial measurement (e.g. of an older version): rows only
    text = f"""## Inference accuracy: every mode against `--mode full`, per case

Machine: {machine()} (shared with other jobs: seconds are indicative, compare them within one row)

Model `{args.model}`: {_describe(args.model)}. {len(cases)} held-out cases: the run's validation fold and
fresh phantom cases ({args.fresh}); each mode reads the NIfTI file, predicts with the public API (as
`medseg predict`), writes and re-reads the label map; Dice against the reference on the scan's grid.
`default` is coarse-to-fine, `tta` is the default with `--tta`; "box grown": the fine pass found liver at
a face of the coarse pass's box and ran again with a larger box.

{_accuracy.table(rows)}

Re-run: `python benchmarks/bench_inference.py --model RUN --accuracy`.
"""
    print(text)
    if not args.no_write:
        write_section("inference-accuracy", text)


def _describe(model: Path) -> str:
    """One line: network, parameters, window, target spacing of the run."""
    from medseg.runs import find_checkpoint, load_checkpoint

    ckpt = load_checkpoint(find_checkpoint(model))
    cfg = ckpt["model_config"]
    params = sum(v.numel() for k, v in ckpt["model"].items() if "running" not in k and "num_batches" not in k)
    spacing = " x ".join(f"{s:.2f}" for s in ckpt["plan"]["target_spacing_mm"])
    patch = "x".join(str(p) for p in ckpt["inference"]["patch_size"])
    return (f"{cfg['name']} depth {cfg.get('depth')}, {cfg.get('base_filters')} base filters, {params / 1e6:.2f} M "
            f"parameters, window {patch} at {spacing} mm")


def _report(results: dict, info: dict, scan_mb: float, model: Path, args, model_line: str) -> None:
    from _report import machine, write_section

    base = results.get("monai")
    rows = []
    for method, r in results.items():
        speedup = f"{base['seconds'] / r['seconds']:.1f}x" if base else "-"
        peak, added = r["peak_rss_mb"], r["peak_rss_mb"] - r["base_rss_mb"]
        compute = f"{r.get('runtime', '?')}, {r.get('precision', '?')}"
        rows.append(f"| {method} | {compute} | {r['seconds']:.1f} | {speedup} | {r['dice_liver']:.4f} | "
                    f"{r['dice_tumor']:.4f} | {peak:.0f} ({peak / scan_mb:.1f}x) | "
                    f"{added:.0f} ({added / scan_mb:.1f}x) |")
    notes = ""
    if base:
        notes = (f"Of the `monai` run, {base['network_s']:.1f} s are the sliding window itself; the rest\n"
                 "(reading, resampling, restoring to the scan grid, post-processing, writing) is work that\n"
                 "medseg does in blocks.")
        ours = results.get("medseg")
        if ours:
            speedup = base["seconds"] / ours["seconds"]
            equal = abs(ours["dice_liver"] - base["dice_liver"]) <= 0.005
            added = (ours["peak_rss_mb"] - ours["base_rss_mb"]) / scan_mb
            notes += ("\n\nGoals: at least 3x faster than the plain sliding window at equal Dice (liver within "
                      f"0.005): {'met' if speedup >= 3 and equal else 'NOT met'} ({speedup:.1f}x, liver Dice "
                      f"{ours['dice_liver'] - base['dice_liver']:+.4f}); peak memory added by the scan under 4x its "
                      f"int16 size: {'met' if added < 4 else 'NOT met'} ({added:.1f}x).")
    shape = "x".join(str(s) for s in info["shape"])
    spacing = ", ".join(f"{s:.2f}" for s in info["spacing_mm"])
    text = f"""## Inference: `medseg predict` vs. a plain MONAI sliding window

Machine: {machine()}

One LiTS-size phantom scan ({shape}, spacing {spacing} mm, {scan_mb:.0f} MB as int16; seed {args.seed},
case {args.index}); model `{model}`:
{model_line}. Window and overlap {args.overlap} the same for all methods; one CPU thread; fastest of
{args.repeat} runs; each method in a fresh process, timed from loading the model and reading the NIfTI
to writing the label map (imports excluded), with the same post-processing; medseg with `--no-volumes
--no-preview`, so that every method writes the label map only.

- `monai`: the run's network and weights in PyTorch float32 on the CPU (what a plain MONAI user runs),
  `sliding_window_inference(mode="gaussian")` over the whole resampled scan, then `restore_to_scan` +
  argmax (the plain approach).
- `medseg-full`: `medseg predict --mode full` with its default runtime (`--runtime auto`: OpenVINO on a
  CPU where it is installed, bfloat16 where the CPU has it natively; column "runtime, precision" from
  `run.json`), air-only windows skipped, block-wise preparation and restoration.
- `medseg`: `medseg predict` defaults (same runtime): coarse pass at twice the spacing finds the liver,
  then the whole-scan grid's windows centred in the liver box (+15 mm, grown while the liver reaches a
  face).

Peak RSS is the process's peak resident memory (`VmHWM`; in brackets: multiple of the scan's int16
size); "added" subtracts the resident memory after importing torch/MONAI/medseg, before the model loads.

| method | runtime, precision | seconds | speed-up vs monai | Dice liver | Dice tumor | peak RSS MB | added RSS MB |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

{notes}

Re-run: `medseg train liver --out runs/liver/fold0` (the CPU profile on the built-in
phantom set), then `python benchmarks/bench_inference.py --model runs/liver/fold0`.
"""
    print(text)
    if not args.no_write:
        write_section("inference", text)


if __name__ == "__main__":
    main()
