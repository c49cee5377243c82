"""Benchmark fine-tuning (`medseg train liver --init-from RUN`): a model trained on one phantom seed, then
trained on another seed's cases starting from it, against the same network trained from scratch on them;
validation liver and tumor Dice on the target set's held-out fold after equal training wall time.

The liver CPU profile (unet 3D depth 4 width 8, adamw) with a short schedule so that the whole benchmark
fits about 15 minutes of one core; run it pinned:

    taskset -c 0 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_finetune.py     # writes the section
    .venv/bin/python benchmarks/bench_finetune.py --quick --no-write                       # a smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or "unknown CPU"


def _overrides(args, cache: Path, *extra: str) -> list[str]:
    return [f"training.iterations_per_epoch={args.iterations}", f"training.patch_size={args.patch}",
            "training.workers=0", "data.folds=2", f"validation.every_n_epochs={args.every}",
            "validation.max_cases=null", f"data.cache_dir={cache}", "training.deterministic=true", *extra]  # fmt: skip


def _run(name: str, overrides: list[str], data: Path, out: Path) -> list[dict]:
    """Train one run; its metrics rows with the cumulative training seconds (validation excluded)."""
    from medseg.training.loader import load_pipeline
    from medseg.training.loop import train

    config = load_pipeline("liver", device="cpu", overrides=overrides)
    started = time.perf_counter()
    train(config, run_dir=out, data=data, progress=False)
    rows = json.loads(json.dumps(_rows(out)))
    total = 0.0
    for row in rows:
        total += float(row["seconds"])
        row["train_s"] = total
    print(f"{name}: {len(rows)} epochs in {time.perf_counter() - started:.0f} s (validation included)",
          file=sys.stderr)  # fmt: skip
    return rows


def _rows(run: Path) -> list[dict]:
    import csv

    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _cell(row: dict, key: str) -> str:
    return f"{float(row[key]):.3f}" if row.get(key) else ""


def _table(curves: dict[str, list[dict]]) -> str:
    names = list(curves)
    head = "| epoch | " + " | ".join(f"{n}: train s | {n}: liver | {n}: tumor" for n in names) + " |"
    lines = [head, "|---|" + "---|---|---|" * len(names)]
    for i, row in enumerate(curves[names[0]]):
        if not row.get("val_dice_liver"):
            continue
        cells = []
        for n in names:
            r = curves[n][i]
            cells += [f"{r['train_s']:.0f}", _cell(r, "val_dice_liver"), _cell(r, "val_dice_tumor")]
        lines.append(f"| {row['epoch']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=8, help="phantom cases per seed (target: half held out)")
    parser.add_argument("--pretrain-epochs", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=8, help="epochs of the fine-tuned and the scratch run")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--every", type=int, default=2, help="validation every N epochs")
    parser.add_argument("--patch", default="[96,96,16]")
    parser.add_argument("--quick", action="store_true", help="tiny phantoms, 2 epochs: a smoke run")
    parser.add_argument("--no-write", action="store_true", help="print, do not update docs/benchmarks.md")
    args = parser.parse_args()
    size = "tiny" if args.quick else "small"
    if args.quick:
        args.cases, args.pretrain_epochs, args.epochs, args.iterations, args.every = 4, 1, 2, 2, 1
        args.patch = "[32,32,16]"
    from medseg.data import write_phantom_dataset

    with tempfile.TemporaryDirectory(prefix="bench_finetune_") as tmp:
        work = Path(tmp)
        source, target = work / "seed0", work / "seed1"
        write_phantom_dataset(source, cases=args.cases, size=size, seed=0, workers=1, progress=False)
        write_phantom_dataset(target, cases=args.cases, size=size, seed=1, workers=1, progress=False)
        pre = _run("pretrain", _overrides(args, work / "cache0", f"training.epochs={args.pretrain_epochs}",
                                          f"validation.every_n_epochs={args.pretrain_epochs}"), source, work / "pre")
        common = [f"training.epochs={args.epochs}"]
        curves = {
            "scratch": _run("scratch", _overrides(args, work / "cache1", *common), target, work / "scratch"),
            "fine-tuned": _run("fine-tuned", _overrides(args, work / "cache1", *common,
                                                        f"training.init_from={work / 'pre'}"), target, work / "ft"),
            "fine-tuned, 1 frozen epoch": _run("frozen", _overrides(
                args, work / "cache1", *common, f"training.init_from={work / 'pre'}",
                "training.freeze_encoder_epochs=1"), target, work / "frozen"),
        }  # fmt: skip
    text = _section(args, size, pre, curves)
    print(text)
    if not args.no_write:
        write_section("finetune", text)
    return 0


def _section(args, size: str, pre: list[dict], curves: dict[str, list[dict]]) -> str:
    import os

    flags = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    held = args.cases - args.cases // 2
    return f"""## Fine-tuning (`benchmarks/bench_finetune.py`)

Machine: {machine()}; {_cpu_model()}; pinned to one core (`taskset -c 0`), {flags}; the other core
was shared with other jobs.

Re-run: `taskset -c 0 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_finetune.py`

Liver CPU profile (unet 3D depth 4 width 8, adamw lr 0.002, Dice + CE with deep supervision), patch {args.patch} x
batch 2, {args.iterations} iterations per epoch, `{size}` phantoms. The pretrained model: {args.pretrain_epochs} epochs
on {args.cases} cases of phantom seed 0 ({pre[-1]['train_s']:.0f} s of training; its validation liver Dice
{_cell(pre[-1], 'val_dice_liver')}, tumor {_cell(pre[-1], 'val_dice_tumor')}). Target: {args.cases} cases of seed 1,
fold 0 of 2 ({args.cases // 2} training, {held} held out). Each run trains {args.epochs} epochs on the target's
training cases; Dice is the validation Dice of the raw argmax on all {held} held-out cases (preprocessed grid),
"train s" the cumulative training seconds before that validation (validation excluded; the runs share network
and schedule, so equal epochs are equal wall time to a few percent). "fine-tuned": `--init-from` the
pretrained run (its plan, network and weights; same classes, nothing re-initialised); "1 frozen epoch":
`training.freeze_encoder_epochs=1` as well.

{_table(curves)}
"""


if __name__ == "__main__":
    raise SystemExit(main())
