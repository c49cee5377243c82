"""``medseg phantom`` (write a synthetic LiTS-like data set) and ``medseg check`` (data-set integrity)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medseg.cli._inputs import add_ignore_label_option, add_labels_option, add_series_uid_option, labels_from
from medseg.errors import ConfigError

__all__ = ["register"]

_PHANTOM_EPILOG = """examples:
  medseg phantom data/phantom --cases 8 --size small
  medseg phantom data/tiny --cases 4 --size tiny --seed 1 --workers 2

Writes volume-N.nii.gz, segmentation-N.nii.gz (0 background, 1 liver, 2 tumor) and manifest.json with
each case's true liver / tumor volumes (mL), lesion count and lesion centres. The same --seed gives the
same cases, whatever --cases and --workers are.
"""

_CHECK_EPILOG = """examples:
  medseg check data/phantom
  medseg check /data/Task03_Liver --workers 4 --csv liver_check.csv

Reads every case (LiTS, Decathlon or DICOM-per-case layout) and prints one table with every problem:
missing labels, unreadable or truncated files, image/label shape, spacing, origin or direction
mismatch, label values outside {0,1,2} or non-integer, NaN/inf, implausible HU ranges, cases without
liver, unusual spacings. Exit status 2 if any problem is an error; warnings alone give 0.
"""


def register(subparsers) -> None:
    """Add the ``phantom`` and ``check`` sub-commands."""
    from medseg.data.phantom import PHANTOM_SIZES

    p = subparsers.add_parser(
        "phantom", help="write a synthetic LiTS-like CT data set with liver/tumor labels",
        description="Generate a deterministic LiTS-like synthetic CT data set (LiTS file layout).",
        epilog=_PHANTOM_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", metavar="OUT", help="output folder (created if missing)")
    p.add_argument("--cases", type=int, default=8, help="number of cases (default 8)")
    p.add_argument("--size", choices=sorted(PHANTOM_SIZES), default="small",
                   help="tiny: 48x48 at ~8 mm (tests); small: 128x128 at ~3 mm (demo, CPU training); "
                        "lits: 512x512 at ~0.75 mm (benchmarks). Default small")
    p.add_argument("--seed", type=int, default=0, help="data-set seed (default 0)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.set_defaults(func=_phantom)

    c = subparsers.add_parser(
        "check", help="check a data set's integrity before training",
        description="Check every case of a data set and report all problems in one table.",
        epilog=_CHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("data", metavar="DATA", help="data set folder (LiTS, Decathlon or one DICOM folder per case)")
    c.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    c.add_argument("--csv", metavar="OUT", default=None, help="also write the problems as CSV")
    add_labels_option(c, what="data set's label maps")
    add_ignore_label_option(c, what="data set's label maps")
    add_series_uid_option(c)
    c.set_defaults(func=_check)


def _phantom(args: argparse.Namespace) -> int:
    from medseg.data.phantom import write_phantom_dataset

    if args.cases < 1:
        raise ConfigError(f"--cases must be at least 1, got {args.cases}")
    _check_workers(args.workers)
    _check_phantom_out(Path(args.out), args)
    manifest = write_phantom_dataset(args.out, cases=args.cases, size=args.size, seed=args.seed,
                                     workers=args.workers)
    print(f"wrote {args.cases} {args.size} phantom cases to {args.out} (ground truth in {manifest})")
    return 0


def _check(args: argparse.Namespace) -> int:
    from medseg.data.check import check_dataset
    from medseg.utils.atomic import atomic_write_csv
    from medseg.utils.paths import check_outputs

    _check_workers(args.workers)
    check_outputs({"--csv": args.csv}, [], input_files=_dataset_files(Path(args.data)))
    report = check_dataset(args.data, workers=args.workers, labels=labels_from(args.labels),
                           series_uid=args.series_uid, ignore_label=args.ignore_label)
    print(report.format_table())
    if args.csv:
        atomic_write_csv(args.csv, report.to_dataframe())
    if report.ok:
        return 0
    cases = len({p.case_id for p in report.errors})
    print(f"medseg check: error: {args.data}: {len(report.errors)} error(s) in {cases} case(s), see the table above",
          file=sys.stderr)
    return 2


def _check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")


def _dataset_files(root: Path) -> list[Path]:
    """The files of the data set under ``root`` (images, labels, dataset.json); all of ``root`` if unrecognised."""
    from medseg.data.discovery import discover_dataset
    from medseg.errors import MedsegError

    try:
        scan = discover_dataset(root, report_orphans=False)
    except MedsegError:
        return [root]  # the check will report the problem; meanwhile protect everything in the folder
    files = [p for case in scan.cases for p in (case.image, case.label) if p is not None]
    return [*files, *scan.orphan_labels, root / "dataset.json"]


def _check_phantom_out(out: Path, args: argparse.Namespace) -> None:
    """Refuse to write a phantom over anything but nothing, an empty folder, or the same earlier phantom.

    An earlier phantom of the same ``--size`` and ``--seed`` with at most ``--cases`` cases is rewritten
    with identical cases (the same seed gives the same cases); anything else is someone's data.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError("OUT names an existing file; expected a folder", path=out)
    if not out.is_dir() or not any(not p.name.startswith(".") for p in out.iterdir()):
        return
    try:
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    same = (isinstance(manifest, dict) and manifest.get("generator") == "medseg.data.phantom"
            and manifest.get("size") == args.size and manifest.get("seed") == args.seed
            and isinstance(manifest.get("cases"), list) and len(manifest["cases"]) <= args.cases)
    if not same:
        what = "a different phantom" if isinstance(manifest, dict) and "generator" in manifest else "files"
        raise ConfigError(f"folder already holds {what}; refusing to write a phantom over it (choose a new or "
                          "empty folder)", path=out)
