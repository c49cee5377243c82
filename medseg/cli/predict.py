"""``medseg predict``: label maps (and volumes) for a cohort of CT scans with a trained run."""

from __future__ import annotations

import argparse
import logging
import sys

from medseg.cli._inputs import add_labels_option, add_series_uid_option, fold_list, labels_from

__all__ = ["register"]

logger = logging.getLogger(__name__)

_EPILOG = """examples:
  medseg predict --model runs/liver/fold0 data/new_scans --out predictions
  medseg predict --model runs/liver data/new_scans --out predictions     # ensemble of every trained fold
  medseg predict --model runs/liver --folds 0,1 scan1.nii.gz --out predictions --save-probabilities
  medseg predict --model runs/liver/fold0/best.pt scan1.nii.gz dicom/patient07 --out predictions --tta
  medseg predict --model runs/liver/fold0 data/cohort --out predictions --skip-existing   # resume
  medseg predict --model runs/liver/fold0 dicom/patient07 --out predictions --format dicom-seg --no-preview
  medseg predict --model ~/.totalsegmentator/nnunet/results/Dataset291_TotalSegmentator_part1_organs_1559subj/\
nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres scan1.nii.gz --out predictions --labels liver=5   # nnU-Net v2
  torchrun --nproc_per_node 4 -m medseg predict --model runs/liver/fold0 data/cohort --out predictions
  medseg predict --model runs/liver data/cohort --out predictions --part 2/8 --skip-existing  # or a Slurm array

Writes per scan <case>_seg.nii.gz (uint8: 0 background, 1 liver, 2 tumor; the scan's own shape and
affine), <case>_seg.dcm (DICOM SEG referencing the source series; DICOM input, see --format),
<case>_volumes.json (liver, tumor, lesions with RECIST axes, burden, warnings) and <case>_preview.png (QA
picture); per run volumes.csv, lesions.csv and run.json (model checksum, settings, versions, per-case
timings, warnings and files; updated after every case). A scan that cannot be predicted is reported on one
line and skipped; the exit code is 2 when any scan failed. A cohort splits into parts: --part K/N, a
Slurm array task (SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT) or torchrun's RANK of WORLD_SIZE (on GPU
LOCAL_RANK; each rank writes run.rank<R>.json, rank 0 run.json); every part takes every N-th of the sorted
case ids. volumes.csv and lesions.csv are rebuilt from every <case>_volumes.json in the folder; when the
last part of a cohort ends it prints one line for the cohort and writes failures.csv (docs/inference.md).
"""


def register(subparsers) -> None:
    """Add the ``predict`` sub-command."""
    p = subparsers.add_parser(
        "predict",
        help="segment liver and tumors in CT scans with a trained run",
        description="Segment liver and liver tumors in CT scans (NIfTI files, folders of them, DICOM series "
                    "folders) with a trained run; outputs overlay the scans in any viewer.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="NIfTI file, folder of NIfTI files, DICOM series folder "
                   "or data set folder")
    p.add_argument("--model", required=True, metavar="RUN",
                   help="run folder (uses best.pt, else last.pt), .pt file, or a folder of fold runs "
                        "(fold<K>/, as `medseg train --fold all` writes): the ensemble of its trained folds; or an "
                        "nnU-Net v2 trained-model folder (<trainer>__<plans>__<configuration>: its fold_K ensemble, "
                        "no post-processing unless asked; docs/other-tools.md)")
    p.add_argument("--folds", type=fold_list, default=None, metavar="K,L",
                   help="with a folder of fold runs: ensemble only these folds (default: every trained fold)")
    p.add_argument("--checkpoint", choices=("final", "best"), default="final",
                   help="nnU-Net model folders: checkpoint_final.pth (default) or checkpoint_best.pth of each fold")
    add_labels_option(p, what="model's classes (the label map written is then LiTS')")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--mode", choices=("coarse-to-fine", "full"), default="coarse-to-fine",
                   help="coarse-to-fine: find the liver at half resolution first, then full resolution in its box "
                        "(default); full: whole scan at full resolution")
    p.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap in [0, 0.75] (default 0.5)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False,
                   help="mirroring test-time augmentation along the axes mirrored in training "
                        "(up to 8x slower in 3D; default off)")
    p.add_argument("--skip-air", action=argparse.BooleanOptionalAction, default=True,
                   help="skip windows outside the body (default on)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    p.add_argument("--batch-size", type=int, default=None, help="windows per forward pass (default 2 in 3D, 16 in 2D)")
    _add_compute_options(p)
    p.add_argument("--skip-existing", action="store_true", help="leave scans whose <case>_seg.nii.gz exists alone")
    p.add_argument("--part", metavar="K/N", default=None,
                   help="predict part K (0-based) of N of the sorted scans (default: the Slurm array task, if any)")
    p.add_argument("--no-volumes", action="store_true",
                   help="do not write <case>_volumes.json, volumes.csv and lesions.csv")
    p.add_argument("--format", choices=("auto", "nifti", "dicom-seg", "both"), default="auto",
                   help="label map format: auto (default) = NIfTI, plus DICOM SEG (<case>_seg.dcm) for DICOM "
                        "input; nifti; dicom-seg (SEG only, NIfTI if the SEG fails); both (DICOM input only)")
    p.add_argument("--no-preview", action="store_true", help="do not write the QA picture <case>_preview.png")
    _add_postprocessing_options(p)
    p.add_argument("--save-probabilities", action="store_true",
                   help="also write <case>_prob_liver.nii.gz, <case>_prob_tumor.nii.gz and <case>_uncertainty.nii.gz "
                        "(normalised entropy of the (ensemble's mean) probabilities) on the scan's grid: uint8, "
                        "value = stored / 255 (scl_slope set, so viewers show 0..1)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: when stderr is a terminal)")
    p.add_argument("--strict", action="store_true",
                   help="a scan unlike the training data (voxel size far from the model's, unusual field of view, "
                        "not CT, no body, predicted liver outside the training intensities) fails instead of "
                        "getting a warning in <case>_volumes.json")
    add_series_uid_option(p)
    p.set_defaults(func=_predict)


def _add_postprocessing_options(p) -> None:
    """``--crf`` and ``--no-postprocessing``."""
    p.add_argument("--crf", action="store_true",
                   help="refine the probabilities with a dense CRF (mm and HU kernels) inside the liver's box before "
                        "the post-processing (docs/inference.md)")
    p.add_argument("--no-postprocessing", action="store_true",
                   help="raw argmax of the network: none of the run's post-processing (largest liver, tumor "
                        "inside the liver, small lesions), e.g. to compare with nnU-Net's predictor")
    p.add_argument("--postprocessing", metavar="FILE", default=None,
                   help="the post-processing a postprocessing.json of `medseg crossval` chose, instead of the "
                        "run's: how an nnU-Net folder gets the choice made on its validation outputs "
                        "(docs/crossval.md)")


def _add_compute_options(p) -> None:
    """``--precision``, ``--runtime`` and ``--cache-dir``: how the network is computed."""
    p.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="CPU compute precision: auto (default) = bfloat16 autocast on CPUs with native bfloat16 "
                        "(AMX / AVX512-BF16), else float32; float32 forces full precision (recorded in run.json)")
    p.add_argument("--runtime", choices=("auto", "torch", "openvino"), default="auto",
                   help="what computes the network: auto (default) = OpenVINO on the CPU where it is installed, "
                        "PyTorch on CUDA and elsewhere; torch; openvino (CPU only; recorded in run.json)")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="folder of networks converted for OpenVINO, reused across runs (default "
                        "~/.cache/medseg/openvino)")


def _predict(args: argparse.Namespace) -> int:

    import torch

    from medseg.inference.batch import collect_inputs, predict_batch, shard_from_env
    from medseg.inference.cpu import cpu_threads
    from medseg.inference.parts import resolve_part
    from medseg.inference.predictor import InferenceSettings
    from medseg.outputs.case import record_part
    from medseg.runs.provenance import PHANTOM_WARNING, phantom_only

    rank, world_size, local_rank = shard_from_env()
    part = resolve_part(args.part)  # refused here, before any work, when malformed
    device = args.device
    if world_size > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        device = f"cuda:{local_rank % torch.cuda.device_count()}"
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        torch.set_num_threads(cpu_threads(world_size))  # one per physical core, at most OMP_NUM_THREADS
    settings = InferenceSettings(mode=args.mode, overlap=args.overlap, batch_size=args.batch_size, tta=args.tta,
                                 skip_air=args.skip_air, progress=bool(args.progress),
                                 probabilities=args.save_probabilities, precision=args.precision,
                                 runtime=args.runtime, cache_dir=args.cache_dir,
                                 postprocessing=_postprocessing_override(args),
                                 strict=args.strict)  # the Predictor runs the scan checks
    inputs, failures = collect_inputs(args.inputs)
    _check_outputs(args, inputs)
    _check_formats(args, inputs)
    predictor = _load_predictor(args, device, settings)
    inputs = part.select(inputs, key=lambda item: item[0])
    failures = part.select(failures, key=lambda outcome: outcome.case_id)
    where = f" (part {part.label}, {part.source})" if part.count > 1 else ""
    logger.info("predicting %d scan(s) on %s%s", len(inputs), predictor.device, where)
    if phantom_only(predictor.training_data):  # once per run; every output records it (docs/outputs.md)
        logger.warning("%s: %s", args.model, PHANTOM_WARNING)
    writer = _writer(args, settings, predictor, rank, part)
    try:
        summary = predict_batch(predictor, inputs, args.out, skip_existing=args.skip_existing,
                                progress=args.progress, writer=writer, series_uid=args.series_uid)
    except BaseException as exc:
        writer.manifest.finish("interrupted" if isinstance(exc, KeyboardInterrupt | SystemExit) else "failed")
        raise
    summary.outcomes = failures + summary.outcomes
    for outcome in failures:
        writer.case_done(outcome)
    writer.manifest.finish("complete", counts=summary.counts())
    print(f"medseg predict{where}: {summary.format()}", file=sys.stderr)
    cohort = record_part(args.out, part.to_dict(), summary.outcomes) if part.count > 1 else None
    if cohort is not None:  # the last part of the cohort to end
        print(f"medseg predict: cohort of {cohort['parts']} parts done: {cohort['ok']} predicted, {cohort['skipped']} "
              f"skipped, {cohort['failed']} failed (reasons: {args.out}/failures.csv)", file=sys.stderr)  # fmt: skip
    return 2 if summary.failed else 0


def _load_predictor(args: argparse.Namespace, device, settings):
    """The run's predictor with ``--crf`` and ``--labels`` applied (a non-LiTS model without ``--labels`` is
    refused unless no volumes are measured)."""
    import dataclasses

    from medseg.inference.predictor import Predictor

    predictor = Predictor.from_run(args.model, device=device, settings=settings, folds=args.folds,
                                   checkpoint=args.checkpoint)
    if args.crf:  # the run's (or --no-postprocessing's) steps, with the dense CRF before them
        from medseg.inference.crf import CrfSettings

        steps = predictor.settings.postprocessing or predictor.postprocessing
        predictor = predictor.with_settings(postprocessing=dataclasses.replace(steps, crf=CrfSettings()))
    if args.labels is not None:  # another model's classes as liver/tumor
        predictor = dataclasses.replace(predictor, label_mapping=labels_from(args.labels))
    elif not args.no_volumes or args.postprocessing is not None:  # post-processing acts on liver and tumor
        _check_lits_classes(args.model, predictor.labels)
    return predictor


def _postprocessing_override(args: argparse.Namespace):
    """``NO_POSTPROCESSING`` with ``--no-postprocessing``, ``--postprocessing FILE``'s choice, else ``None``
    (the run's own)."""
    from medseg.errors import ConfigError
    from medseg.inference.ensemble import read_postprocessing_file
    from medseg.inference.postprocess import NO_POSTPROCESSING

    if args.postprocessing is None:
        return NO_POSTPROCESSING if args.no_postprocessing else None
    if args.no_postprocessing:
        raise ConfigError("--postprocessing and --no-postprocessing contradict each other", path=args.postprocessing)
    # chosen for the classes this prediction reads as liver and tumor (refused otherwise)
    return read_postprocessing_file(args.postprocessing, None if args.labels is None else labels_from(args.labels))


def _writer(args: argparse.Namespace, settings, predictor, rank: int, part):
    """The per-case outputs and the run manifest (``run.json``, started here) of this process."""
    from medseg.outputs.case import OutputSettings
    from medseg.outputs.run import predict_outputs

    outputs = OutputSettings(format=args.format, preview=not args.no_preview, volumes=not args.no_volumes, rank=rank)
    return predict_outputs(args.out, predictor, outputs, model=args.model, inference=settings,
                           skip_existing=args.skip_existing, part=part)


def _check_lits_classes(model, labels: dict) -> None:
    """Volumes read 1 as liver and 2 as tumor: refuse a model with other classes unless --labels maps them."""
    from medseg.errors import DataError
    from medseg.labels import is_lits

    if not is_lits(labels):
        shown = ", ".join(f"{k} {v}" for k, v in list(labels.items())[1:6]) + (", ..." if len(labels) > 6 else "")
        raise DataError(f"the model's classes are not LiTS' ({shown}): say which are liver and tumor with "
                        "--labels liver=K [tumor=L], or write label maps only with --no-volumes", path=model)


def _check_formats(args: argparse.Namespace, inputs: list) -> None:
    """A DICOM SEG needs a DICOM source: refuse NIfTI inputs for --format dicom-seg/both before any work."""
    from medseg.errors import DataError
    from medseg.io.nifti import is_nifti

    if args.format in ("dicom-seg", "both"):
        for _, path in inputs:
            if is_nifti(path):
                raise DataError(f"--format {args.format}: a DICOM SEG needs a DICOM source series; this is a NIfTI "
                                "file (use --format nifti or auto)", path=path)


def _check_outputs(args: argparse.Namespace, inputs: list) -> None:
    """Refuse an --out that is an input (or an existing file), or a case output that would replace a scan."""
    from pathlib import Path

    from medseg.data.naming import prediction_filename
    from medseg.outputs.case import map_filename, seg_filename, volumes_filename
    from medseg.outputs.preview import preview_filename
    from medseg.utils.paths import check_outputs

    out = Path(args.out)
    check_outputs({"--out": out}, [*args.inputs, args.model], folders=["--out"])
    outputs = {f"--out ({name})": out / name for case_id, _ in inputs
               for name in (prediction_filename(case_id), volumes_filename(case_id), seg_filename(case_id),
                            preview_filename(case_id),
                            *(map_filename(case_id, m) for m in ("liver", "tumor", "uncertainty")))}
    outputs.update({f"--out ({name})": out / name for name in ("run.json", "volumes.csv", "lesions.csv")})
    check_outputs(outputs, [*(path for _, path in inputs), args.model])
