"""``medseg crossval``: the cross-validation report of a folder of fold runs, and its post-processing."""

from __future__ import annotations

import argparse
import sys

from medseg.cli._inputs import add_labels_option, fold_list, labels_from

__all__ = ["register"]

_EPILOG = """examples:
  medseg train liver --data data/LiTS --fold all --out runs/liver
  medseg crossval runs/liver                      # every trained fold's validation cases, then post-processing
  medseg crossval runs/liver --protocol lits2017 --tta
  medseg crossval runs/liver --data /new/place/LiTS --device cuda
  medseg crossval nnUNet_results/Dataset501_Liver/nnUNetTrainer__nnUNetPlans__3d_fullres \\
      --data nnUNet_raw/Dataset501_Liver --out crossval_nnunet          # nnU-Net's own validation outputs

Each fold's validation cases (its folds.json) are predicted by that fold's model on their own scan grids
(no post-processing) into RUNS/crossval/predictions/ and evaluated together: RUNS/crossval/per_case.csv
(with the fold of each case), lesions.csv, summary.json (per fold and pooled over all cases), folds.png,
boxplots.png, volumes.png. Then the post-processing is chosen on these predictions (the dense CRF, keep the
largest liver, tumor only inside the liver, a minimum lesion volume; each step kept only where it raises that
region's cross-validation Dice and lowers no other; for the CRF each case is also refined by it as it is
predicted, into RUNS/crossval/predictions_crf/, unless --no-crf) and written to RUNS/postprocessing.json,
which `medseg predict --model RUNS` applies (docs/crossval.md).

An nnU-Net v2 trained-model folder (<trainer>__<plans>__<configuration>) is not predicted again: the
predictions nnU-Net's trainer wrote into fold_K/validation/ (nnUNetv2_train ... --val) are evaluated against
--data (the raw data set, labelsTr/), the fold of a case being the fold_K it sits in. Nothing is written
inside that folder: the report and postprocessing.json go to --out (required), and `medseg predict --model
FOLDER --postprocessing OUT/postprocessing.json` applies the choice. Models whose classes are not LiTS' are
mapped with --labels (liver=5), on the predictions and the references alike (docs/other-tools.md).
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
    p.add_argument("runs", metavar="RUNS", help="folder of fold runs (fold<K>/, as `medseg train --fold all` writes), "
                   "or an nnU-Net v2 trained-model folder whose fold_K/validation/ holds nnU-Net's predictions")
    p.add_argument("--folds", type=fold_list, metavar="K,L", help="only these folds (default: every trained fold)")
    p.add_argument("--data", metavar="DIR", help="the data set, when it moved since training (default: data.json); "
                   "an nnU-Net folder: its raw data set (imagesTr/, labelsTr/; required)")
    p.add_argument("--out", metavar="DIR", help="the report's folder: required for an nnU-Net folder (nothing is "
                   "written inside it); a folder of fold runs reports in RUNS/crossval")
    add_labels_option(p, what="nnU-Net model's label maps (its validation predictions and the references)")
    p.add_argument("--protocol", choices=("medseg", "lits2017"), default="medseg",
                   help="evaluation conventions (docs/metrics.md; default medseg)")
    p.add_argument("--mode", choices=("coarse-to-fine", "full"), default="coarse-to-fine",
                   help="prediction mode, as medseg predict (default coarse-to-fine)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False,
                   help="mirroring test-time augmentation (default off)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    p.add_argument("--no-postprocessing", action="store_true",
                   help="do not choose the post-processing (RUNS/postprocessing.json left as it is)")
    p.add_argument("--no-crf", action="store_true",
                   help="do not try the dense CRF as a post-processing step (it runs on every case: slower)")
    p.add_argument("--no-figures", action="store_true", help="do not draw the figures")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")
    p.set_defaults(func=_crossval)


def _crossval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medseg.errors import ConfigError
    from medseg.interop.nnunet import is_nnunet_folder

    if is_nnunet_folder(args.runs):
        return _crossval_nnunet(args)
    for flag, value in (("--out", args.out), ("--labels", args.labels)):
        if value is not None:
            raise ConfigError(f"{flag} is for nnU-Net folders; a folder of fold runs reports in RUNS/crossval",
                              path=args.runs)  # fmt: skip
    return _crossval_runs(args, Path(args.runs))


def _crossval_runs(args: argparse.Namespace, root) -> int:
    from medseg.inference.crf import CrfSettings
    from medseg.inference.predictor import InferenceSettings
    from medseg.training.crossval import CrossvalSettings, out_of_fold_cases, run_crossval
    from medseg.training.postprocessing_search import choose_postprocessing
    from medseg.utils.paths import check_outputs

    folds = args.folds
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    settings = CrossvalSettings(inference=InferenceSettings(mode=args.mode, tta=args.tta), folds=folds,
                                protocol=args.protocol, device=args.device, data=args.data,
                                figures=not args.no_figures, progress=progress,
                                crf=None if args.no_crf or args.no_postprocessing else CrfSettings())  # fmt: skip
    fold_cases = out_of_fold_cases(root, folds, args.data)  # refuses a bad folder before any work
    check_outputs({"RUNS/crossval": root / "crossval"}, [c.image for f in fold_cases for c in f.cases],
                  folders=["RUNS/crossval"])  # fmt: skip
    summary = run_crossval(root, settings)
    print(_format(summary), file=sys.stderr)
    if not args.no_postprocessing:
        choice = choose_postprocessing(root, fold_cases, progress=progress, crf=settings.crf)
        print(f"medseg crossval: post-processing {choice['chosen']} -> {root / 'postprocessing.json'}",
              file=sys.stderr)  # fmt: skip
    return 0


def _crossval_nnunet(args: argparse.Namespace) -> int:
    """nnU-Net's validation outputs evaluated into --out (checks first, one line each)."""
    from pathlib import Path

    from medseg.errors import ConfigError
    from medseg.training.nnunet_crossval import (
        NnUNetCrossvalSettings,
        check_out,
        find_validation_folds,
        run_nnunet_crossval,
    )
    from medseg.utils.paths import check_outputs

    out = check_out(args.runs, args.out)
    if args.data is None:
        raise ConfigError("--data DIR is required for an nnU-Net folder: the raw data set (imagesTr/, labelsTr/) "
                          "whose labelsTr holds the references", path=args.runs)  # fmt: skip
    if args.tta:
        raise ConfigError("--tta: an nnU-Net folder's validation predictions are read as nnU-Net wrote them",
                          path=args.runs)  # fmt: skip
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    settings = NnUNetCrossvalSettings(data=args.data, out=out, labels=labels_from(args.labels), folds=args.folds,
                                      protocol=args.protocol, figures=not args.no_figures,
                                      postprocessing=not args.no_postprocessing, progress=progress)  # fmt: skip
    found = find_validation_folds(args.runs, settings)
    for line in found.skipped:
        print(f"medseg crossval: {line}", file=sys.stderr)
    check_outputs({"--out": out}, [args.runs, args.data], folders=["--out"])
    if settings.postprocessing and not args.no_crf:
        print("medseg crossval: the dense CRF is not a post-processing candidate here: nnU-Net's validation "
              "outputs hold no probabilities", file=sys.stderr)  # fmt: skip
    summary = run_nnunet_crossval(args.runs, settings, found)
    print(_format(summary), file=sys.stderr)
    if "postprocessing" in summary:
        print(f"medseg crossval: post-processing {summary['postprocessing']['chosen']} -> "
              f"{Path(out) / 'postprocessing.json'} (medseg predict --model {args.runs} --postprocessing "
              f"{Path(out) / 'postprocessing.json'})", file=sys.stderr)  # fmt: skip
    return 0


def _format(summary: dict) -> str:
    """One line per fold and one pooled: cases, mean liver and tumor Dice."""
    lines = []
    for name, row in summary.get("dice", {}).items():
        lines.append(f"  {name:>7}: {row['cases']:3d} cases, liver Dice {row['liver_dice_mean']:.3f}, "
                     f"tumor Dice {row['tumor_dice_mean']:.3f} (global {row['tumor_dice_global']:.3f})")  # fmt: skip
    return "medseg crossval: out-of-fold predictions evaluated\n" + "\n".join(lines)
