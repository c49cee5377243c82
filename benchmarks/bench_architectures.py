"""Benchmark every registered architecture side by side: `medseg train liver-2d --set model.name=NAME` on
the `small` phantom with the CPU profile, each given the same compute budget (CPU seconds of training steps).

Per architecture: parameters, the model's step time (forward + backward + AdamW step on one CPU-profile
batch, measured in-process through the public API), then a CLI training run whose epoch count is set so
that ``epochs x iterations x step`` fills the budget, with one validation at the end (liver and tumor Dice
of fold 0, read from the run's ``metrics.csv``). Everything else (loss, optimiser, patch, augmentation) is
the pipeline's CPU profile.

    .venv/bin/python benchmarks/bench_architectures.py                  # 20 CPU s per network, 8 phantom cases
    .venv/bin/python benchmarks/bench_architectures.py --pipeline liver --budget-s 300 --models unet fcn8s
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section

PAPERS = {
    "unet": "Ronneberger et al. 2015 / Cicek et al. 2016",
    "resunet": "Isensee et al. 2024 (residual encoder)",
    "attention_unet": "Oktay et al. 2018",
    "fcn32s": "Long et al. 2015",
    "fcn16s": "Long et al. 2015",
    "fcn8s": "Long et al. 2015",
    "segnet": "Badrinarayanan et al. 2015",
    "deeplabv3plus": "Chen et al. 2018",
    "pspnet": "Zhao et al. 2017",
    "refinenet": "Lin et al. 2017",
    "gcn": "Peng et al. 2017",
}


def _medseg(*args: str, log: Path) -> tuple[float, float]:
    """Run ``medseg ARGS`` (niced) with output to ``log``; return ``(wall s, CPU s)`` of the run."""
    command = ["nice", "-n", "10", sys.executable, "-m", "medseg", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("w") as handle:
        env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if done.returncode:
        raise SystemExit(f"`medseg {' '.join(args)}` failed (exit {done.returncode}); see {log}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - start, cpu


def step_time(pipeline: str, name: str, *, steps: int = 2) -> tuple[int, float, str]:
    """``(parameters, median step CPU s, description)`` of the CPU-profile model ``name`` on one batch.

    CPU time of this process (``time.process_time``, all threads), not wall time: on a shared machine the
    wall time of a niced job mostly measures the other jobs."""
    from medseg.models import build_model, count_parameters
    from medseg.training.loader import load_pipeline

    config = load_pipeline(pipeline, overrides=[f"model.name={name}"], device="cpu")
    model = build_model(config.model_config()).train()
    t = config.training
    image = torch.randn(t.batch_size, config.in_channels, *t.patch_size)
    target = torch.randint(0, config.data.num_classes, (t.batch_size, *t.patch_size))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for _ in range(steps + 1):
        start = time.process_time()
        outputs = model(image)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        loss = sum(torch.nn.functional.cross_entropy(out, _nearest(target, out.shape[2:])) for out in outputs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.process_time() - start)
    m = config.model
    strides = [list(s) if isinstance(s, list | tuple) else s for s in m.strides] if m.strides else "default"
    described = f"{config.spatial_dims}D depth {m.depth}, width {m.base_filters}, strides {strides}"
    return count_parameters(model), sorted(times[1:])[len(times[1:]) // 2], described


def _nearest(target: torch.Tensor, size) -> torch.Tensor:
    return torch.nn.functional.interpolate(target[:, None].float(), size=tuple(size))[:, 0].long()


def _last_validation(run: Path) -> dict:
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    train_s = sum(float(r["seconds"]) for r in rows if r.get("seconds"))
    validated = [r for r in rows if r.get("val_dice_liver")]
    last = validated[-1] if validated else {}
    return {"train_s": train_s, "epochs": len(rows), **{k: float(v) for k, v in last.items() if k.startswith("val_")}}


def run(args) -> list[str]:
    """Phantom, then per model: step time, budgeted CLI training, final validation; the Markdown lines."""
    from medseg.training.loader import load_pipeline

    profile = load_pipeline(args.pipeline, device="cpu")
    iterations = args.iterations
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "phantom"
        _medseg("phantom", str(data), "--cases", str(args.cases), "--size", "small", "--workers", "1",
                log=tmp / "phantom.log")  # fmt: skip
        for name in args.models:
            params, step_s, described = step_time(args.pipeline, name)
            epochs = max(1, round(args.budget_s / (iterations * step_s)))
            overrides = [f"model.name={name}", f"data.folds={args.folds}", f"validation.every_n_epochs={epochs}",
                         f"training.iterations_per_epoch={iterations}", f"data.cache_dir={tmp / 'cache'}"]  # fmt: skip
            sets = [a for o in overrides for a in ("--set", o)]
            command = ["train", args.pipeline, "--data", str(data), "--out", str(tmp / name), "--epochs", str(epochs),
                       "--device", "cpu", "--no-progress", *sets]  # fmt: skip
            wall, cpu = _medseg(*command, log=tmp / f"{name}.log")
            result = _last_validation(tmp / name)
            rows.append({"name": name, "params": params, "step_s": step_s, "epochs": epochs, "wall_s": wall,
                         "cpu_s": cpu, "described": described, **result})  # fmt: skip
            print(f"{name}: {rows[-1]}", flush=True)
    return _table(rows, args, profile)


def _table(rows: list[dict], args, profile) -> list[str]:
    t = profile.training
    lines = [
        "## Architectures side by side (`benchmarks/bench_architectures.py`)",
        "",
        f"Machine: {machine()}. **Shared and loaded** (other engineers' jobs ran at the same time), so compare "
        "the ratios within this table, not the absolute times.",
        "",
        f"`medseg phantom --cases {args.cases} --size small`, then per network `medseg train {args.pipeline} --set "
        f"model.name=fcn8s --set data.folds={args.folds}` (fcn8s and every other name): the `{args.pipeline}` "
        f"CPU profile (patch {list(t.patch_size)} x "
        f"batch {t.batch_size}, {rows[0]['described'] if rows else ''}, AdamW, Dice + CE, deep supervision) "
        f"with as many epochs of {args.iterations} iterations as fit the same compute budget of "
        f"**{args.budget_s:.0f} CPU seconds** of model steps (iterations = budget / model step, the step's CPU "
        "time measured first: on a shared machine the wall time of a niced job mostly measures the other "
        "jobs, so the budget is CPU time, i.e. the same wall time on an idle machine; one thread per process, "
        "`OMP_NUM_THREADS=1`); one validation at the "
        "end on "
        f"the validation cases of fold 0 (Dice of the raw argmax on the preprocessed grid). Scaled down to "
        f"stay within ~20 min of CPU for all networks: {args.budget_s:.0f} CPU s each instead of the minutes the "
        "U-Net needs to reach the training goal, fewer cases than the 16 of `medseg train`, and the 2.5D "
        "pipeline by default (the 3D one needs ~100 steps, ~15 min per network on this loaded machine, before "
        "its liver Dice moves); the Dice values are those of short runs, a ranking of how fast each design "
        "learns on this budget, not of what it reaches.",
        "",
        "| network | paper | parameters | model step CPU s | iterations | run CPU s | run wall s | "
        "liver Dice | tumor Dice |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['name']}` | {PAPERS.get(r['name'], '')} | {r['params']:,} | {r['step_s']:.3f} | "
            f"{r['epochs'] * args.iterations} | "
            f"{r['cpu_s']:.0f} | {r['wall_s']:.0f} | {r.get('val_dice_liver', float('nan')):.3f} | "
            f"{r.get('val_dice_tumor', float('nan')):.3f} |"
        )
    lines += ["", "Model step: CPU time of forward + backward + AdamW step of the network alone on one random "
              "CPU-profile batch with a cross-entropy loss (median of 2 after a warm-up, in-process); run CPU s / "
              "wall s: the whole `medseg train` process (start-up, data loading, the pipeline's Dice + CE with "
              "deep supervision, validation). Re-run: "
              f"`.venv/bin/python benchmarks/bench_architectures.py --pipeline {args.pipeline} --budget-s "
              f"{args.budget_s:.0f} --cases {args.cases} --iterations {args.iterations}`."]  # fmt: skip
    return lines


def main() -> int:
    from medseg.models import available_models

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default="liver-2d", help="pipeline (default liver-2d)")
    parser.add_argument("--budget-s", type=float, default=20.0, help="CPU seconds of model steps per network (20)")
    parser.add_argument("--iterations", type=int, default=5, help="iterations per epoch (5: a fine budget grid)")
    parser.add_argument("--cases", type=int, default=8, help="phantom cases (8)")
    parser.add_argument("--folds", type=int, default=4, help="cross-validation folds (4: 2 validation cases)")
    parser.add_argument("--models", nargs="+", default=available_models(), help="networks (default: all)")
    parser.add_argument("--no-write", action="store_true", help="print, do not update docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread per process, here and in the runs (OMP_NUM_THREADS=1): a shared machine
    lines = run(args)
    print("\n".join(lines))
    if not args.no_write:
        write_section("architectures", "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
