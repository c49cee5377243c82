"""``medseg evaluate`` and ``medseg volumes``: thin command-line wrappers over :mod:`medseg.evaluation`."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from medseg.cli._inputs import add_ignore_label_option, add_labels_option, add_series_uid_option, labels_from
from medseg.evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS

__all__ = ["register"]

logger = logging.getLogger(__name__)

_EVALUATE_EPILOG = """examples:
  medseg evaluate --pred predictions --ref data/lits --out evaluation
  medseg evaluate --pred predictions --ref Task03_Liver --out eval --nsd-tolerance-mm 1 --workers 2
  medseg evaluate --pred predictions --ref data/lits --out eval-lits2017 --protocol lits2017

writes per_case.csv (one row per case: liver_dice, tumor_hd95_mm, ..., lesions_tp/fp/fn,
tumor_burden_pred_percent/ref, pixel_accuracy, mean_iou, ...), lesions.csv, summary.json, boxplots.png,
volumes.png and froc.png. summary.json adds pixel accuracy, mean and frequency-weighted IoU of the
summed confusion matrix (confusion) and lesion AP at IoU > 0.5 with the FROC curve (lesion_detection):
lesions ranked by their maximum tumor probability from <case>_prob_tumor.nii.gz (in --probabilities,
default --pred), else by the argmax (confidence 1).
--protocol lits2017 scores as the LiTS 2017 challenge scorer did (6-connected lesions, 18-neighbour
surfaces, 9001 for undefined values, tumor burden as a fraction; its bugs fixed) and writes its names:
per_case.csv (liver_dice ... liver_msd, lesion_dice_per_case, TP, FP, FN, tumor_burden_diff, ...),
lesions.csv and summary.json (scores: lesion_precision ... MAXERROR_Tumorburden), no figures.
Formulas and where the protocols differ: docs/metrics.md.
"""

_VOLUMES_EPILOG = """examples:
  medseg volumes predictions/3_seg.nii.gz
  medseg volumes data/lits/segmentation-3.nii --image data/lits/volume-3.nii --json vol.json --csv lesions.csv
"""


def register(subparsers) -> None:
    """Add the ``evaluate`` and ``volumes`` sub-commands."""
    p = subparsers.add_parser(
        "evaluate",
        help="score predicted label maps against references (LiTS metrics, lesions, volumes)",
        description="Score predicted liver/tumor label maps against reference label maps, per case and "
        "over the cohort: overlap, surface distances, lesion detection, volumes and tumor burden.",
        epilog=_EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pred", required=True, type=Path, help="folder of predicted label maps (<case>_seg.nii.gz, "
                   "or DICOM SEG <case>_seg.dcm), or one label map file")
    p.add_argument("--ref", required=True, type=Path, help="reference data set or folder of label maps (NIfTI or "
                   "DICOM SEG <case>.dcm), or one reference file with a --pred file")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--nsd-tolerance-mm", type=float, default=2.0, help="surface Dice tolerance (default 2 mm)")
    p.add_argument("--iou-threshold", type=float, default=0.5, help="lesion detection IoU threshold (0.5)")
    p.add_argument("--connectivity", type=int, default=3, choices=(1, 2, 3), help="lesion connectivity (3 = 26)")
    p.add_argument("--workers", type=int, default=None, help="parallel cases (default: all cores)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--allow-missing", action="store_true",
                   help="score a reference case without prediction as an empty prediction (the LiTS convention) "
                        "instead of refusing the run; listed under 'missing' in summary.json")  # fmt: skip
    p.add_argument("--probabilities", type=Path, default=None, metavar="DIR",
                   help="folder of <case>_prob_tumor.nii.gz tumor probability maps ranking the lesions for AP and "
                        "FROC (default: --pred; cases without one: confidence 1)")  # fmt: skip
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default=DEFAULT_PROTOCOL,
        help="conventions, names and units: medseg (default) or lits2017 (the LiTS 2017 scorer's)",
    )
    add_labels_option(p, what="references (--ref)")
    add_labels_option(p, "--pred-labels", what="predictions (--pred)")
    add_ignore_label_option(p, what="references (--ref)")
    p.set_defaults(func=_evaluate)

    v = subparsers.add_parser(
        "volumes",
        help="liver, tumor and lesion volumes of a label map",
        description="Measure liver (incl. tumor), parenchyma and tumor volumes in mL, tumor burden and "
        "every lesion (volume, axial and 3D diameter, centroid) of a LiTS label map.",
        epilog=_VOLUMES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("seg", type=Path, help="label map: NIfTI (0, 1 liver, 2 tumor; see --labels) or DICOM SEG")
    v.add_argument("--image", type=Path, default=None, help="the CT scan (NIfTI or DICOM series folder), for mean/std "
                   "HU; a label map stored in another voxel order on the same grid is reoriented onto it")
    v.add_argument("--json", type=Path, default=None, help="write the measurements as JSON")
    v.add_argument("--csv", type=Path, default=None, help="write the lesion table as CSV")
    v.add_argument("--connectivity", type=int, default=3, choices=(1, 2, 3), help="lesion connectivity")
    add_labels_option(v, what="label map")
    add_series_uid_option(v)
    v.set_defaults(func=_volumes)


def _evaluate(args: argparse.Namespace) -> int:
    from medseg.evaluation.runner import evaluate_folders
    from medseg.utils.lock import folder_lock

    config = _evaluation_config(args)
    _check_evaluate_outputs(args)
    with folder_lock(args.out, "evaluate"):  # before run.json: a refused second run must not touch it
        manifest = _start_manifest(args, config)
        try:
            run = evaluate_folders(
                args.pred,
                args.ref,
                args.out,
                config=config,
                workers=args.workers,
                figures=not args.no_figures,
                protocol=args.protocol,
                labels=labels_from(args.labels, ignore_label=args.ignore_label),
                pred_labels=labels_from(args.pred_labels),
                probabilities=args.probabilities,
                allow_missing=args.allow_missing,
            )
        except BaseException as exc:
            manifest.finish("interrupted" if isinstance(exc, KeyboardInterrupt | SystemExit) else "failed")
            raise
        _finish_manifest(manifest, args, run)
    status = _report_failures(run)
    print(_scorer_report(run, args.out) if args.protocol != DEFAULT_PROTOCOL else _console_summary(run, args.out))
    return status


def _evaluation_config(args: argparse.Namespace):
    """The :class:`EvaluationConfig` of the flags (``None`` under a fixed protocol such as ``lits2017``)."""
    from medseg.errors import ConfigError
    from medseg.evaluation.case import EvaluationConfig

    try:
        config = EvaluationConfig(
            nsd_tolerance_mm=args.nsd_tolerance_mm, iou_threshold=args.iou_threshold, connectivity=args.connectivity
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.protocol == DEFAULT_PROTOCOL:
        return config
    if config != EvaluationConfig():
        raise ConfigError(
            f"--nsd-tolerance-mm, --iou-threshold and --connectivity do not apply to --protocol {args.protocol}: "
            "its conventions are fixed (6-connected lesions, IoU > 0.5 and > 0; docs/metrics.md)"
        )
    return None


def _console_summary(run, out) -> str:
    """The console lines of a ``--protocol medseg`` evaluation: Dice, HD95, ASSD, detection, references."""
    regions = run.summary["regions"]
    detection = run.summary.get("detection", {})
    lines = [f"{len(run.results)} cases evaluated -> {out}"]
    for region, block in regions.items():
        if block is None:
            lines.append(f"  {region:6s} not scored: the references declare no {region} label (--labels)")
            continue
        lines.append(
            f"  {region:6s} Dice mean {block['dice']['mean']:.4f}  global {block['dice_global']:.4f}  "
            f"HD95 median {block['hd95_mm']['median']:.2f} mm  ASSD mean {block['assd_mm']['mean']:.2f} mm"
        )
    if detection:
        lines.append(
            f"  lesions TP {detection['tp']} FP {detection['fp']} FN {detection['fn']}  "
            f"precision {detection['precision']:.3f} recall {detection['recall']:.3f} F1 {detection['f1']:.3f}"
        )
    lines += _classic_metrics_lines(run.summary)
    references = run.summary.get("references")
    if references:
        lines.append(f"  references holding a tumor: {references['with_tumor']} of {len(run.results)} "
                     f"({references['without_tumor']} tumor-free: tumor Dice there is 1 for an empty prediction, "
                     "0 otherwise)")
    if run.missing_predictions:
        lines.append(f"  missing predictions counted as empty: {', '.join(run.missing_predictions)}")
    return "\n".join(lines)


def _classic_metrics_lines(summary: dict) -> list[str]:
    """Pixel accuracy and IoU of the pooled confusion matrix; lesion AP and FROC CPM."""
    lines = []
    pooled = summary.get("confusion", {}).get("pooled")
    if pooled:
        accuracy, miou, fw = (_fmt(pooled[k], 4) for k in ("pixel_accuracy", "mean_iou", "frequency_weighted_iou"))
        lines.append(f"  pooled: pixel accuracy {accuracy}  mean IoU {miou}  frequency-weighted IoU {fw}")
    ap = summary.get("lesion_detection")
    if ap:
        lines.append(f"  lesion AP (IoU > {ap['iou_threshold']}) {_fmt(ap['average_precision'], 3)}  FROC CPM "
                     f"{_fmt(ap['froc']['cpm'], 3)}  (confidence: {ap['confidence']})")  # fmt: skip
    return lines


def _start_manifest(args: argparse.Namespace, config):
    """``run.json`` in --out, status ``running``: the command line and the resolved settings."""
    import dataclasses

    from medseg.outputs.manifest import RunManifest

    settings = {"protocol": args.protocol, "config": dataclasses.asdict(config) if config is not None else None,
                "pred": str(args.pred), "ref": str(args.ref), "labels": args.labels, "pred_labels": args.pred_labels,
                "figures": not args.no_figures}
    return RunManifest.start(args.out, command="evaluate", settings=settings)


def _finish_manifest(manifest, args: argparse.Namespace, run) -> None:
    """Per case: prediction and reference paths, status (``ok``, ``failed`` with its reason); then complete."""
    from medseg.evaluation.matching import match_cases

    pairs, _ = match_cases(args.pred, args.ref)
    evaluated = {result.case for result in run.results}
    cases = []
    for pair in pairs:
        entry = {"case_id": pair.case, "input": str(pair.pred) if pair.pred else None, "reference": str(pair.ref),
                 "status": "ok" if pair.case in evaluated else "failed"}
        if pair.case in run.failed:
            entry["reason"] = str(run.failed[pair.case])
        cases.append(entry)
    manifest.finish("complete", cases=cases, outputs=[str(p) for p in run.files.values()],
                    references=run.summary.get("references"))


def _report_failures(run) -> int:
    """Print one line per skipped case to stderr; 2 when any case was skipped, else 0."""
    import sys

    for reason in run.failed.values():
        print(f"medseg evaluate: error: skipped {reason}", file=sys.stderr)
    return 2 if run.failed else 0


def _scorer_report(run, out: Path) -> str:
    """The lines a ``--protocol lits2017`` run prints: the scorer's ``scores.txt`` figures."""
    from medseg.evaluation.lits2017 import scores_text

    lines = [f"{len(run.results)} cases evaluated (protocol {run.summary['protocol']}) -> {out}"]
    lines += [f"  {line}" for line in scores_text(run.summary["scores"]).splitlines()]
    if run.missing_predictions:
        lines.append(f"  missing predictions counted as empty: {', '.join(run.missing_predictions)}")
    return "\n".join(lines)


def _check_evaluate_outputs(args: argparse.Namespace) -> None:
    """Refuse an --out that is an input folder or an existing file, or whose reports would replace an input."""
    from medseg.evaluation.matching import match_cases
    from medseg.evaluation.report import REPORT_FILES
    from medseg.utils.paths import check_outputs

    check_outputs({"--out": args.out}, [args.pred, args.ref], folders=["--out"])
    if args.probabilities is not None and not args.probabilities.is_dir():
        from medseg.errors import DataError

        raise DataError("--probabilities: folder not found", path=args.probabilities)
    pairs, unmatched = match_cases(args.pred, args.ref)
    inputs = [p for pair in pairs for p in (pair.ref, pair.pred) if p is not None] + list(unmatched)
    check_outputs({f"--out ({name})": args.out / name for name in REPORT_FILES}, inputs)


def _fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _volumes(args: argparse.Namespace) -> int:

    from medseg.errors import DataError
    from medseg.evaluation.volumes import volumes_report
    from medseg.io.reader import read_label_map, read_volume
    from medseg.utils.atomic import atomic_write_csv, atomic_write_json
    from medseg.utils.paths import check_outputs

    check_outputs({"--json": args.json, "--csv": args.csv}, [args.seg, args.image])
    image = read_volume(args.image, series_uid=args.series_uid) if args.image else None
    label = read_label_map(args.seg, labels=labels_from(args.labels), like=image, series_uid=args.series_uid)
    try:
        report = volumes_report(label, image, connectivity=args.connectivity)
    except DataError:
        raise
    except ValueError as exc:
        raise DataError(str(exc), path=args.image or args.seg) from None
    report = {"file": str(args.seg), **report}
    flags = {True: " (touches the scan edge: possibly truncated)", False: ""}
    lines = [
        f"{args.seg}",
        f"  liver (incl. tumor) {_fmt(report['liver_ml'])} mL{flags[report['liver_truncated']]}",
        f"  liver parenchyma    {_fmt(report['liver_parenchyma_ml'])} mL",
        f"  tumor               {_fmt(report['tumor_ml'], 2)} mL{flags[report['tumor_truncated']]}",
        f"  tumor burden        {_fmt(report['tumor_burden_percent'], 2)} %",
    ]
    if "hu" in report:
        lines.append(
            "  mean HU             "
            + "  ".join(f"{k} {_fmt(v['mean'])}±{_fmt(v['std'])}" for k, v in report["hu"].items())
        )
    lines.append(f"  lesions             {report['lesion_count']}")
    if report["lesions"]:
        lines.append("      #   volume mL  RECIST long x short mm  max 3D mm  centroid mm (RAS)")
        for lesion in report["lesions"]:
            centroid = ", ".join(f"{c:.1f}" for c in lesion["centroid_mm"])
            recist = f"{lesion['axial_diameter_mm']:.1f} x {lesion['short_axis_mm']:.1f}"
            lines.append(
                f"    {lesion['lesion']:3d}  {lesion['volume_ml']:9.2f}  {recist:>22s}  "
                f"{lesion['max_diameter_mm']:9.1f}  ({centroid}){'  truncated' if lesion['truncated'] else ''}"
            )
    print("\n".join(lines))
    if args.json:
        atomic_write_json(args.json, report)
    if args.csv:
        from medseg.data.naming import case_id_from_path
        from medseg.evaluation.tables import lesion_rows, lesions_table

        atomic_write_csv(args.csv, lesions_table(lesion_rows(case_id_from_path(args.seg), report["lesions"])))
    return 0
