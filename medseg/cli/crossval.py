"""``medseg crossval``: the cross-validation report of a folder of fold runs, and its post-processing."""

from __future__ import annotations

import argparse
import sys

from medseg.cli._inputs import fold_list

__all__ = ["register"]

_EPILOG = """examples:
  medseg train liver --data data/LiTS --fold all --out runs/liver
  medseg crossval runs/liver                      # every trained fold's validation cases, then post-processing
  medseg crossval runs/liver --protocol lits2017 --tta
  medseg crossval runs/liver --data /new/place/LiTS --device cuda

Each fold's validation cases (its folds.json) are predicted by that fold's model on their own scan grids
(no post-processing) into RUNS/crossval/predictions/ and evaluated together: RUNS/crossval/per_case.csv
(with the fold of each case), lesions.csv, summary.json (per fold and pooled over all cases), folds.png,
boxplots.png, volumes.png. Then the post-processing is chosen on these predictions (keep the largest liver,
tumor only inside the liver, a minimum lesion volume; each step kept only where it raises that region's
cross-validation Dice and lowers no other) and written to RUNS/postprocessing.json, which `medseg predict
--model RUNS` applies (docs/crossval.md).
"""


def register(subparsers) -> None:
    """Add the ``crossval`` sub-command."""
    p = subparsers.add_parser(
        "crossval",
        help="cross-validation report of a folder of fold runs; chooses the post-processing",
        description="Predict every fold's validation cases with that fold's model, evaluate them together "
                    "(per case, per fold, pooled) and choose the post-processing on them.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", metavar="RUNS", help="folder of fold runs (fold<K>/, as `medseg train --fold all` writes)")
    p.add_argument("--folds", type=fold_list, metavar="K,L", help="only these folds (default: every trained fold)")
    p.add_argument("--data", metavar="DIR", help="the data set, when it moved since training (default: data.json)")
    p.add_argument("--protocol", choices=("medseg", "lits2017"), default="medseg",
                   help="evaluation conventions (docs/metrics.md; default medseg)")
    p.add_argument("--mode", choices=("coarse-to-fine", "full"), default="coarse-to-fine",
                   help="prediction mode, as medseg predict (default coarse-to-fine)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False,
                   help="mirroring test-time augmentation (default off)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    p.add_argument("--no-postprocessing", action="store_true",
                   help="do not choose the post-processing (RUNS/postprocessing.json left as it is)")
    p.add_argument("--no-figures", action="store_true", help="do not draw the figures")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")
    p.set_defaults(func=_crossval)


def _crossval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medseg.inference.predictor import InferenceSettings
    from medseg.training.crossval import CrossvalSettings, out_of_fold_cases, run_crossval
    from medseg.training.postprocessing_search import choose_postprocessing
    from medseg.utils.paths import check_outputs

    folds = args.folds
    root = Path(args.runs)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    settings = CrossvalSettings(inference=InferenceSettings(mode=args.mode, tta=args.tta), folds=folds,
                                protocol=args.protocol, device=args.device, data=args.data,
                                figures=not args.no_figures, progress=progress)  # fmt: skip
    fold_cases = out_of_fold_cases(root, folds, args.data)  # refuses a bad folder before any work
    check_outputs({"RUNS/crossval": root / "crossval"}, [c.image for f in fold_cases for c in f.cases],
                  folders=["RUNS/crossval"])  # fmt: skip
    summary = run_crossval(root, settings)
    print(_format(summary), file=sys.stderr)
    if not args.no_postprocessing:
        choice = choose_postprocessing(root, fold_cases, progress=progress)
        print(f"medseg crossval: post-processing {choice['chosen']} -> {root / 'postprocessing.json'}",
              file=sys.stderr)  # fmt: skip
    return 0


def _format(summary: dict) -> str:
    """One line per fold and one pooled: cases, mean liver and tumor Dice."""
    lines = []
    for name, row in summary.get("dice", {}).items():
        lines.append(f"  {name:>7}: {row['cases']:3d} cases, liver Dice {row['liver_dice_mean']:.3f}, "
                     f"tumor Dice {row['tumor_dice_mean']:.3f} (global {row['tumor_dice_global']:.3f})")  # fmt: skip
    return "medseg crossval: out-of-fold predictions evaluated\n" + "\n".join(lines)
