"""The --labels and --series-uid options shared by check, volumes, evaluate and predict."""

from __future__ import annotations

import argparse

from medseg.cli._inputs import add_labels_option, add_series_uid_option, labels_from


def _parser():
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="*")
    add_labels_option(parser)
    add_labels_option(parser, "--pred-labels", what="predictions")
    add_series_uid_option(parser)
    return parser


def test_defaults_mean_lits_labels_and_the_only_series():
    args = _parser().parse_args(["a.nii.gz"])
    assert args.labels is None and args.pred_labels is None and args.series_uid is None
    assert labels_from(args.labels) is None


def test_values_are_parsed_into_a_mapping():
    args = _parser().parse_args(["a.nii.gz", "--labels", "liver=5", "--labels", "tumor=2,3", "--series-uid", "1.2.3"])
    assert args.labels == ["liver=5", "tumor=2,3"] and args.series_uid == "1.2.3"  # repeated flags extend
    mapping = labels_from(args.labels)
    assert tuple(mapping.liver) == (5,) and tuple(mapping.tumor) == (2, 3) and mapping.explicit
    assert "predictions" in _parser().format_help()
