"""Options shared by several commands: ``--labels``, ``--series-uid`` and fold lists (``--folds``, ``--fold``)."""

from __future__ import annotations

import argparse

__all__ = ["add_ignore_label_option", "add_labels_option", "add_series_uid_option", "fold_list", "labels_from"]

_LABELS_HELP = (
    "which values of the {what} are liver and tumor, for maps from other tools: liver=5 (TotalSegmentator), "
    "liver=255 (a 0/255 mask), liver=1 tumor=2,3; for a DICOM SEG segment labels or numbers, "
    "liver=\"Liver\". Unlisted values are background. Default: 0/1/2 (LiTS), other values are an error; "
    "a DICOM SEG maps by SNOMED code or segment label. Put it after the file arguments"
)


def add_labels_option(parser: argparse.ArgumentParser, flag: str = "--labels", *, what: str = "label maps") -> None:
    """Add ``flag REGION=VALUES [REGION=VALUES]`` (parsed by :func:`labels_from`)."""
    parser.add_argument(flag, nargs="+", action="extend", default=None, metavar="REGION=VALUES",
                        help=_LABELS_HELP.format(what=what))


def add_ignore_label_option(parser: argparse.ArgumentParser, *, what: str = "label maps") -> None:
    """Add ``--ignore-label V``: the value of unannotated voxels (partial annotations, issue #30)."""
    parser.add_argument("--ignore-label", type=int, default=None, metavar="V",
                        help=f"the value that marks voxels of the {what} as not annotated (partial annotations, "
                             "3..255, e.g. from `medseg sparsify`); those voxels are left out. A dataset.json "
                             "may declare it among its labels (\"ignore\": 3). Undeclared, it is an error")


def add_series_uid_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--series-uid UID``: which series of a DICOM folder holding several to read."""
    parser.add_argument("--series-uid", default=None, metavar="UID",
                        help="SeriesInstanceUID to read from a DICOM folder that holds several series (the error "
                             "listing them shows the UIDs); \"<no uid>\" chooses a series whose files have none")


def labels_from(values: list[str] | None, *, ignore_label: int | None = None):
    """The :class:`~medseg.io.label_map.LabelMapping` of a ``--labels`` option (``None`` when not given), with
    the ``--ignore-label`` value declared (then the LiTS mapping when ``--labels`` is not given)."""
    if values is None and ignore_label is None:
        return None
    from medseg.io.label_map import LITS_MAPPING, LabelMapping

    mapping = LITS_MAPPING if values is None else LabelMapping.parse(values)
    return mapping.with_ignore(ignore_label)


def fold_list(text: str, *, expected: str = "fold numbers such as 0,1") -> tuple[int, ...]:
    """``K,L,...`` as distinct fold numbers >= 0, in that order (an ``argparse`` type)."""
    try:
        folds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if any(k < 0 for k in folds) or len(set(folds)) != len(folds):
        raise argparse.ArgumentTypeError(f"folds must be distinct numbers >= 0, got {text!r}")
    return folds
