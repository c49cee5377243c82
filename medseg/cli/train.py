"""``medseg train``: train a pipeline on one cross-validation fold, several (``--fold 0,2``) or all of them."""

from __future__ import annotations

import argparse
import sys

from medseg.cli._inputs import fold_list

__all__ = ["register"]

_EPILOG = """examples:
  medseg train liver                                  # no data given: trains on the built-in phantom set
  medseg train liver --data data/LiTS --fold 0 --out runs/liver/fold0
  medseg train liver-2d --data data/LiTS --set training.batch_size=24 --set optimizer.lr=0.02
  medseg train liver --out runs/liver/fold0 --resume  # continue a stopped run from last.pt
  medseg train liver --data data/LiTS --fold all --out runs/liver      # every fold in turn: runs/liver/fold<K>
  medseg train liver --data data/LiTS --fold all --out runs/liver --resume   # continue each fold on its own
  CUDA_VISIBLE_DEVICES=1 medseg train liver --data data/LiTS --fold 1 --out runs/liver/fold1  # one fold per GPU
  medseg train my_pipeline.yaml --epochs 100
  medseg train liver --data data/LiTS --init-from runs/liver/fold0 --epochs 50      # fine-tune a medseg run
  medseg train liver --data data/LiTS --init-fold 0 \
      --init-from nnUNet_results/Dataset003_Liver/nnUNetTrainer__nnUNetPlans__3d_fullres   # an nnU-Net model
  torchrun --nproc_per_node=4 -m medseg train liver --data data/LiTS   # 4 GPUs (docs/training.md)

Pipelines: liver (3D), liver-2d (2.5D), or a path to a YAML file (keys: docs/pipelines.md).
The run folder gets config.yaml, plan.json, folds.json, last.pt (every epoch), best.pt, metrics.csv and
curves.png; `medseg predict --model RUN_FOLDER` uses it.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a segmentation pipeline (e.g. liver) on one fold, several or all",
        description="Train a pipeline on one cross-validation fold (or several in turn); the data set must pass "
        "`medseg check`.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("pipeline", help="pipeline name (liver, liver-2d) or path to a pipeline .yaml")
    parser.add_argument("--data", metavar="DIR", help="data set folder (default: data.root, else the phantom set)")
    parser.add_argument("--fold", type=_fold_arg, default=None, metavar="K",
                        help="cross-validation fold (default 0; with --resume: the run's own), a list (0,2) or "
                             "'all' (data.folds folds); several folds train in turn into --out/fold<K>")  # fmt: skip
    parser.add_argument("--epochs", type=int, metavar="N", help="number of epochs (same as --set training.epochs=N)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a pipeline value, e.g. --set training.batch_size=4 (repeatable)")  # fmt: skip
    parser.add_argument("--out", metavar="DIR",
                        help="run folder (default: runs/<pipeline>/fold<K>); with several folds the folder "
                             "of the fold runs (default: runs/<pipeline>)")  # fmt: skip
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out (from last.pt) with its own config, fold and data")  # fmt: skip
    parser.add_argument("--splits", metavar="FILE", help="the folds as a JSON list of {train: [...], val: [...]} "
                        "(nnU-Net's splits_final.json; same as --set data.splits=FILE)")
    parser.add_argument("--group-by", choices=("case", "patient"), default=None,
                        help="patient: every case of a patient in one fold (patients from --patients, else the "
                             "DICOM PatientID; same as --set data.group_by=patient)")
    parser.add_argument("--patients", metavar="CSV", help="case,patient table for --group-by patient")
    parser.add_argument("--init-from", metavar="MODEL",
                        help="fine-tune: start from a medseg run folder or checkpoint, or an nnU-Net v2 results "
                             "folder (its network, weights and plan; same as --set training.init_from=MODEL)")
    parser.add_argument("--init-fold", type=int, metavar="K",
                        help="the fold of --init-from to start from (nnU-Net fold_K, medseg fold<K>; default 0)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the pipeline's device, auto)")
    parser.add_argument("--workers", type=int, metavar="N", help="processes for checking and preprocessing")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=_run)


def _fold_arg(text: str) -> int | str | tuple[int, ...]:
    """``K`` (one fold), ``all`` or ``K,L,...`` (several folds, in that order)."""
    if text.strip().lower() == "all":
        return "all"
    folds = fold_list(text, expected="a fold number, a list such as 0,2 or 'all'")
    return folds[0] if len(folds) == 1 and "," not in text else folds


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medseg.errors import ConfigError

    if args.resume and (args.init_from or args.init_fold is not None):
        raise ConfigError("--init-from/--init-fold start a new run; --resume continues the run's own")
    data_flags = {"data.splits": args.splits, "data.group_by": args.group_by, "data.patients_csv": args.patients,
                  "training.init_from": args.init_from}
    args.overrides = [*args.overrides, *(f"{key}={Path(value).resolve() if key != 'data.group_by' else value}"
                                         for key, value in data_flags.items() if value)]  # fmt: skip
    if args.init_fold is not None:
        args.overrides.append(f"training.init_fold={args.init_fold}")
    if isinstance(args.fold, int) or args.fold is None:
        return _run_fold(args, args.fold, Path(args.out) if args.out else None)
    return _run_folds(args)


def _run_folds(args: argparse.Namespace) -> int:
    """Train the folds of ``--fold all`` / ``--fold 0,2`` in turn, each in ``<out>/fold<K>`` (resumable on
    its own: ``--resume`` continues the folds that have a run folder and starts the others)."""
    from pathlib import Path

    from medseg.errors import ConfigError
    from medseg.training.loader import find_pipeline, load_pipeline

    pipeline = Path(find_pipeline(args.pipeline))
    root = Path(args.out) if args.out else Path("runs") / pipeline.stem
    n_folds = load_pipeline(pipeline, overrides=list(args.overrides), device="cpu").data.folds
    folds = tuple(range(n_folds)) if args.fold == "all" else args.fold
    bad = [k for k in folds if k >= n_folds]
    if bad:
        raise ConfigError(f"--fold {bad[0]}: the pipeline has data.folds={n_folds} folds (0..{n_folds - 1})")
    for k in folds:
        out = root / f"fold{k}"
        resume = args.resume and (out / "config.yaml").is_file()
        print(f"medseg train: fold {k} of {list(folds)} -> {out}" + (" (resumed)" if resume else ""),
              file=sys.stderr)  # fmt: skip
        _run_fold(argparse.Namespace(**{**vars(args), "resume": resume}), k, out)
    print(f"medseg train: {len(folds)} folds done in {root}; `medseg crossval {root}` evaluates them, "
          f"`medseg predict --model {root}` predicts with their ensemble", file=sys.stderr)  # fmt: skip
    return 0


def _run_fold(args: argparse.Namespace, fold: int | None, out) -> int:
    """Train (or resume) one fold into ``out`` (``None``: ``runs/<pipeline>/fold<K>``)."""
    from pathlib import Path

    from medseg.errors import DataError
    from medseg.training.loader import find_pipeline, load_pipeline
    from medseg.training.loop import train
    from medseg.training.run_files import load_run_config
    from medseg.utils.paths import check_outputs

    overrides = list(args.overrides) + ([f"training.epochs={args.epochs}"] if args.epochs is not None else [])
    pipeline = Path(find_pipeline(args.pipeline))
    out = Path(out) if out is not None else Path("runs") / pipeline.stem / f"fold{fold or 0}"
    check_outputs({"--out": out}, [args.data, pipeline], folders=["--out"])  # never a run folder over an input
    if args.resume:
        config = load_run_config(out, overrides + ([f"device={args.device}"] if args.device else []))
        _check_same_pipeline(pipeline, config.name, out)
    else:
        config = load_pipeline(pipeline, overrides=overrides, device=args.device)
    try:
        result = train(config, run_dir=out, fold=fold, data=args.data, resume=args.resume,
                       workers=args.workers, progress=False if args.no_progress else None)  # fmt: skip
    except OSError as exc:  # a full disk, a read-only folder...: one line naming the file
        if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
            raise
        raise DataError(exc.strerror or str(exc), path=exc.filename or out) from None
    summary = ", ".join(f"{k.removeprefix('val_dice_')} Dice {v:.3f}" for k, v in result.items()
                        if k.startswith("val_dice_"))  # fmt: skip
    print(f"medseg train: done, {result.get('epoch', 0)} epochs; {summary or 'not validated'}; "
          f"best {config.validation.metric} {result['best_metric']:.3f}; run folder {out}",
          file=sys.stderr)  # fmt: skip
    return 0


def _check_same_pipeline(pipeline, run_name: str, out) -> None:
    """``--resume`` continues the run's own pipeline: refuse another one named on the command line."""
    from medseg.errors import ConfigError
    from medseg.utils.yamlfile import read_yaml

    raw = read_yaml(pipeline)
    name = raw.get("name") if isinstance(raw, dict) else None
    if name is not None and name != run_name:
        raise ConfigError(f"--resume: the run in {out} trains pipeline {run_name!r}, not {name!r} ({pipeline})")
