"""Benchmark `medseg train liver`: time to reach validation Dice goals on the `small` phantom set, data-loader
throughput against the model's step time, and GPU figures when a GPU is present.

Goal (CPU-sized defaults, 2-core CPU): liver Dice >= 0.90 and tumor Dice >= 0.60 within 10 minutes.

    .venv/bin/python benchmarks/bench_training.py            # full run, writes the "training" section
    .venv/bin/python benchmarks/bench_training.py --quick    # throughput only
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section

LIVER_GOAL, TUMOR_GOAL = 0.90, 0.60


def throughput(config, prepared, device: str, *, batches: int = 20) -> dict[str, float]:
    """Patches/s of the loader (its configured workers) and of forward+backward+step of the model."""
    from medseg.models import build_model
    from medseg.training.data import PatchSettings, make_loader
    from medseg.training.objective import build_objective
    from medseg.training.optimization import build_optimizer

    t = config.training
    patches = PatchSettings(patch_size=t.patch_size, batch_size=t.batch_size, spatial_dims=config.spatial_dims,
                            context_slices=t.context_slices, foreground_fraction=config.sampling.foreground_fraction,
                            augment=config.augmentation, seed=0)  # fmt: skip
    loader = make_loader(prepared.cache_dir, prepared.train_ids, patches, workers=t.workers or 0,
                         iterations_per_epoch=batches)  # fmt: skip
    it = iter(loader)
    first = next(it)
    start = time.perf_counter()
    n = sum(1 for _ in it)
    loader_rate = n * t.batch_size / (time.perf_counter() - start)
    model = build_model(config.model_config()).to(device).train()
    loss_fn = build_objective(config, model)
    opt = build_optimizer(config, model.parameters())
    image, label = first["image"].to(device), first["label"].to(device)
    use_amp = device.startswith("cuda") and t.amp
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    times = []
    for _ in range(batches // 2 + 3):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        s = time.perf_counter()
        opt.zero_grad()
        with torch.autocast(torch.device(device).type, dtype=torch.float16, enabled=use_amp):
            out = model(image)
        scaler.scale(loss_fn(out, label)).backward()
        scaler.step(opt)
        scaler.update()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - s)
    step = sorted(times[3:])[len(times[3:]) // 2]
    return {"loader_patches_per_s": loader_rate, "step_s": step, "model_patches_per_s": t.batch_size / step}


def time_to_goal(config, out: Path, data: str | None) -> dict:
    """Train ``config``; record wall time at each epoch and the first validation meeting both goals."""
    from medseg.training.loop import train

    events = {"start": time.perf_counter(), "rows": []}

    def record(epoch, row):
        row = dict(row, wall_s=time.perf_counter() - events["start"])
        events["rows"].append(row)
        liver, tumor = row.get("val_dice_liver"), row.get("val_dice_tumor")
        if liver is not None and liver >= LIVER_GOAL and tumor >= TUMOR_GOAL and "goal" not in events:
            events["goal"] = row

    result = train(config, run_dir=out, data=data, progress=True, on_epoch_end=record)
    events["total_s"] = time.perf_counter() - events["start"]
    events["result"] = result
    return events


def _describe(config) -> str:
    m, t = config.model, config.training
    loss = json.dumps({"name": config.loss.name, "params": config.loss.params})
    return (f"{m.name} {config.spatial_dims}D depth {m.depth} width {m.base_filters}, patch "
            f"{list(t.patch_size)} x batch {t.batch_size}, {config.optimizer.name} lr {config.optimizer.lr}, "
            f"loss `{loss}`")  # fmt: skip


def bench_pipeline(name: str, args, device: str) -> list[str]:
    """Throughput rows and (unless ``--quick``) the time-to-goal table of one pipeline's CPU profile."""
    from medseg.training.loader import load_pipeline
    from medseg.training.prepare import prepare_data

    config = load_pipeline(name, device="cpu", overrides=args.overrides)
    t0 = time.perf_counter()
    prepared = prepare_data(config, data=args.data, fold=0)
    prep_s = time.perf_counter() - t0
    lines = [f"### `medseg train {name}` (CPU profile)", "", _describe(config) + ".", "",
             "| device | loader patches/s | model step s | model patches/s |", "|---|---|---|---|"]  # fmt: skip
    rates = throughput(config, prepared, "cpu")
    lines.append(f"| cpu | {rates['loader_patches_per_s']:.1f} | {rates['step_s']:.3f} | "
                 f"{rates['model_patches_per_s']:.1f} |")  # fmt: skip
    if device == "cuda":
        gpu_config = load_pipeline(name, device="cuda", overrides=args.overrides)
        g = throughput(gpu_config, prepared, "cuda")
        lines.append(f"| cuda (full defaults: {_describe(gpu_config)}) | {g['loader_patches_per_s']:.1f} | "
                     f"{g['step_s']:.3f} | {g['model_patches_per_s']:.1f} |")  # fmt: skip
    lines += ["", f"Data check + fingerprint + preprocessing (cached afterwards): {prep_s:.1f} s.", ""]
    if args.quick:
        return lines
    with tempfile.TemporaryDirectory() as tmp:
        ev = time_to_goal(config, Path(tmp) / "run", args.data)
    v = config.validation
    cases = f"{v.max_cases} of the" if v.max_cases else "all"
    lines += [f"{config.training.epochs} epochs x {config.training.iterations_per_epoch} iterations, validation "
              f"every {v.every_n_epochs} epochs on {cases} {len(prepared.val_ids)} cases of fold 0 "
              "(Dice on the preprocessed grid of the raw argmax, which the goal is judged on, and after the "
              "run's post-processing):", "",
              "| epoch | wall s | train loss | liver Dice | tumor Dice | liver Dice, post-processed | "
              "tumor Dice, post-processed |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in ev["rows"]:
        if "val_dice_liver" in row:
            lines.append(f"| {row['epoch']} | {row['wall_s']:.0f} | {row['train_loss']:.3f} | "
                         f"{row['val_dice_liver']:.3f} | {row['val_dice_tumor']:.3f} | "
                         f"{row.get('val_dice_liver_post', float('nan')):.3f} | "
                         f"{row.get('val_dice_tumor_post', float('nan')):.3f} |")  # fmt: skip
    goal = ev.get("goal")
    verdict = (f"goal (liver >= {LIVER_GOAL}, tumor >= {TUMOR_GOAL}) **reached at epoch {goal['epoch']} after "
               f"{goal['wall_s'] / 60:.1f} min**" if goal else
               f"goal (liver >= {LIVER_GOAL}, tumor >= {TUMOR_GOAL}) **not reached**")  # fmt: skip
    lines += ["", f"`{name}`: {verdict}; whole run {ev['total_s'] / 60:.1f} min (preprocessing excluded).", ""]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="throughput only, no training run")
    parser.add_argument("--pipeline", action="append", help="pipeline(s) to run (default: liver and liver-2d)")
    parser.add_argument("--data", help="data set (default: the built-in small phantom set, as `medseg train`)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="pipeline overrides")
    parser.add_argument("--no-write", action="store_true", help="print, do not update docs/benchmarks.md")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lines = [f"Machine: {machine()}", "",
             "Re-run: `.venv/bin/python benchmarks/bench_training.py` (`--quick`: throughput only). Goal: "
             f"validation liver Dice >= {LIVER_GOAL} and tumor Dice >= {TUMOR_GOAL} within 10 minutes on "
             "2 CPU cores, `small` phantom set (16 cases; fold 0: 12 training, 4 validation).", ""]  # fmt: skip
    for name in args.pipeline or ["liver", "liver-2d"]:
        part = bench_pipeline(name, args, device)
        print("\n".join(part), flush=True)
        lines += part
    if device != "cuda":
        lines.append("No GPU on this machine: no GPU figures.")
    text = "\n".join(lines)
    if not args.no_write:
        write_section("training", "## Training (`benchmarks/bench_training.py`)\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
