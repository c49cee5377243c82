"""``medseg compare``: two models (or two readers) against the same references, case by case."""

from __future__ import annotations

import argparse
from pathlib import Path

from medseg.cli._inputs import add_labels_option, labels_from

__all__ = ["register"]

_EPILOG = """examples:
  medseg compare predictions-unet predictions-nnunet --ref data/lits --out comparison
  medseg compare reader1 reader2 --ref data/lits --out readers --names reader1 reader2 --seed 1

writes a/ and b/ (each prediction set's full evaluation, as medseg evaluate), comparison.csv (per case:
every compared metric of a and b and their difference a - b), comparison.json (per metric: the means,
the mean difference with its 95% percentile-bootstrap CI over cases, the sample SD of the differences,
the two-sided Wilcoxon signed-rank p-value, n) and bland_altman.png (liver and tumor volumes of a
against b). Only cases evaluated in both sets are compared; docs/metrics.md.
"""


def register(subparsers) -> None:
    """Add the ``compare`` sub-command."""
    p = subparsers.add_parser(
        "compare", help="compare two prediction sets (models or readers) on the same references",
        description="Evaluate two folders of predictions against the same references and compare them case "
        "by case: paired differences, their mean with a bootstrap 95%% CI, Wilcoxon signed-rank p-values, "
        "and Bland-Altman agreement of the volumes.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("pred_a", type=Path, metavar="PRED_A", help="first folder of predicted label maps")
    p.add_argument("pred_b", type=Path, metavar="PRED_B", help="second folder of predicted label maps")
    p.add_argument("--ref", required=True, type=Path, help="reference data set or folder of label maps")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--names", nargs=2, default=None, metavar=("A", "B"),
                   help="names of the two sets in tables and figures (default: the folders' names)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    p.add_argument("--workers", type=int, default=None, help="parallel cases (default: all cores)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--allow-missing", action="store_true",
                   help="score a reference case without prediction as an empty prediction")
    add_labels_option(p, what="references (--ref)")
    add_labels_option(p, "--pred-labels", what="both prediction sets")
    p.set_defaults(func=_compare)


def _compare(args: argparse.Namespace) -> int:
    from medseg.errors import ConfigError
    from medseg.evaluation.compare import CompareSettings, compare_runs
    from medseg.evaluation.runner import evaluate_folders
    from medseg.evaluation.statistics import BootstrapSettings

    names = tuple(args.names) if args.names else (args.pred_a.name or "a", args.pred_b.name or "b")
    if names[0] == names[1]:
        raise ConfigError(f"the two sets need different names, got {names[0]!r} twice (use --names A B)")
    if args.pred_a.resolve() == args.pred_b.resolve():
        raise ConfigError(f"PRED_A and PRED_B are the same folder: {args.pred_a}")
    runs = [evaluate_folders(pred, args.ref, args.out / sub, workers=args.workers, figures=not args.no_figures,
                             labels=labels_from(args.labels), pred_labels=labels_from(args.pred_labels),
                             allow_missing=args.allow_missing)
            for pred, sub in ((args.pred_a, "a"), (args.pred_b, "b"))]  # fmt: skip
    settings = CompareSettings(names=names, bootstrap=BootstrapSettings(seed=args.seed), figures=not args.no_figures)
    comparison = compare_runs(*runs, args.out, settings)
    print(_console(comparison, names, args.out))
    return 0


def _console(comparison, names: tuple[str, str], out: Path) -> str:
    lines = [f"{len(comparison.per_case)} cases compared ({names[0]} - {names[1]}) -> {out}"]
    for metric, block in comparison.metrics.items():
        low, high = block["ci95"]
        lines.append(f"  {metric:22s} {block['mean_a']:10.4f} {block['mean_b']:10.4f}  "
                     f"diff {block['mean_difference']:+.4f} [{low:+.4f}, {high:+.4f}]  "
                     f"Wilcoxon p {block['wilcoxon_p']:.3g}  (n {block['n']})")
    return "\n".join(lines)
