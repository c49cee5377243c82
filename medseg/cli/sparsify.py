"""``medseg sparsify``: a partially annotated copy of a data set, to plan an annotation budget (issue #30)."""

from __future__ import annotations

import argparse

__all__ = ["register"]

_EPILOG = """examples:
  medseg sparsify data/phantom data/phantom-slices --scheme slices --fraction 0.2
  medseg sparsify data/phantom data/phantom-scribbles --scheme scribbles --fraction 0.2 --seed 1
  medseg sparsify data/phantom data/phantom-patches --scheme patches --fraction 0.1
  medseg sparsify data/phantom data/phantom-boxes --scheme boxes --boxes boxes.csv

Writes OUT in the Decathlon/nnU-Net layout (imagesTr/, labelsTr/, dataset.json declaring "ignore": V) with
every voxel that the scheme leaves unannotated set to the ignore value V:
  slices     every k-th axial slice, k = round(1 / fraction)
  scribbles  on every k-th axial slice, per class a border and an interior stroke (Gotkowski et al. 2024)
  patches    random annotated cubes until `fraction` of the voxels are annotated
  boxes      the dense liver, lesion boxes as tumor cores (the inscribed ellipsoid shrunk by --core) with the
             rest of each box inside the liver ignored; boxes from --boxes (CSV: case, x_min, y_min, z_min,
             x_max, y_max, z_max[, class], world mm) or, without it, the dense lesions' tight boxes
Prints the annotated fraction of each case and of the set (also in dataset.json, "sparsify"). Train on it
with `medseg train liver --data OUT --set data.ignore_label=3` (V = 3 here).
"""


def register(subparsers) -> None:
    """Add the ``sparsify`` sub-command."""
    p = subparsers.add_parser(
        "sparsify", help="write a partially annotated copy of a data set (slices, scribbles, patches, boxes)",
        description="Turn a densely labelled data set into a partially annotated one, with an ignore label.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", metavar="DATA", help="densely labelled data set (LiTS, Decathlon or DICOM layout)")
    p.add_argument("out", metavar="OUT", help="new or empty output folder")
    p.add_argument("--scheme", required=True, choices=("slices", "scribbles", "patches", "boxes"),
                   help="which voxels stay annotated (see below)")
    p.add_argument("--fraction", type=float, default=0.2,
                   help="share of axial slices (slices, scribbles) or of voxels (patches) annotated (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0); each case draws its own stream")
    p.add_argument("--ignore-label", type=int, default=3, metavar="V",
                   help="value written for unannotated voxels, 3..255 (default 3)")
    p.add_argument("--boxes", metavar="CSV", default=None, help="lesion boxes for --scheme boxes (see below)")
    p.add_argument("--core", type=float, default=0.5,
                   help="boxes: the tumor core is the box's inscribed ellipsoid scaled by this (default 0.5)")
    p.set_defaults(func=_sparsify)


def _sparsify(args: argparse.Namespace) -> int:
    from medseg.data.sparse_dataset import SparsifySettings, write_sparse_dataset

    settings = SparsifySettings(scheme=args.scheme, fraction=args.fraction, seed=args.seed,
                                ignore_label=args.ignore_label, boxes_csv=args.boxes, core=args.core)
    record = write_sparse_dataset(args.data, args.out, settings)
    width = max(len(c) for c in record["cases"])
    for case, fraction in record["cases"].items():
        print(f"{case:<{width}}  {100 * fraction:6.2f}% annotated")
    print(f"{args.out}: {len(record['cases'])} cases, scheme {args.scheme}, "
          f"{100 * record['annotated_fraction']:.2f}% of the voxels annotated (ignore label {args.ignore_label})")
    return 0
