"""A prediction run's folder as ``medseg predict`` writes it, for API users too: :func:`predict_outputs`.

``medseg predict`` and a notebook build the same thing from a :class:`~medseg.inference.Predictor`: the
model's record (file name, SHA-256, what it was trained on), the DICOM SEG's algorithm fields, the resolved
settings and ``run.json`` (:mod:`medseg.outputs.manifest`), started before the first case; then
:func:`~medseg.inference.predict_batch` with the returned writer produces every per-case output. Example::

    from medseg.inference import Predictor, collect_inputs, predict_batch
    from medseg.outputs import OutputSettings, predict_outputs

    predictor = Predictor.from_run("runs/liver/fold0")
    writer = predict_outputs("predictions", predictor, OutputSettings(format="nifti"), model="runs/liver/fold0")
    inputs, failures = collect_inputs(["new_scans/"])
    summary = predict_batch(predictor, inputs, "predictions", writer=writer)
    writer.manifest.finish("complete", counts=summary.counts())
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

from medseg.inference.parts import Part
from medseg.inference.predictor import InferenceSettings, Predictor
from medseg.outputs.case import OutputSettings, PredictOutputs
from medseg.outputs.manifest import RunManifest, file_sha256

__all__ = ["compute_report", "model_record", "models_sha256", "predict_outputs"]


def predict_outputs(out_dir: str | os.PathLike, predictor: Predictor, settings: OutputSettings | None = None, *,
                    model: str | os.PathLike, inference: InferenceSettings | None = None,
                    skip_existing: bool = False, part: Part | None = None) -> PredictOutputs:
    """The per-case writer of ``predictor``'s outputs into ``out_dir``, with ``run.json`` started as
    ``medseg predict`` starts it.

    Args:
        out_dir: The output folder (created).
        predictor: The predictor whose outputs these are.
        settings: What to write per case (:class:`OutputSettings`; ``None``: its defaults). Its ``model``
            and, when ``None``, its ``seg`` settings are filled in from ``predictor``; ``rank`` names the
            manifest (``run.rank<R>.json`` for ``R > 0``).
        model: The model argument as given (a run folder, a checkpoint, a folder of folds), recorded in
            ``run.json`` and used to name the model when the predictor has no checkpoint files.
        inference: The inference settings to record (``None``: ``predictor.settings``).
        skip_existing: Recorded in ``run.json``'s output settings (``predict_batch`` acts on it).
        part: This process's part of the cohort (``None``: the whole cohort).

    Returns:
        The writer to hand to :func:`~medseg.inference.predict_batch`; its ``manifest`` is ``run.json``
        (``finish`` it when the batch ends).
    """
    from medseg import __version__
    from medseg.io.dicom_seg_writer import SegSettings
    from medseg.runs.provenance import PHANTOM_WARNING

    settings, part = settings or OutputSettings(), part or Part()
    inference = inference or predictor.settings
    record, checkpoints = model_record(predictor, model)
    seg = settings.seg or SegSettings(algorithm_version=__version__, model_sha256=record["sha256"],
                                      model_name=record["name"], training_data=record["trained_on"])
    settings = dataclasses.replace(settings, seg=seg, model=record, part=part.label if part.count > 1 else "")
    resolved = {"inference": dataclasses.asdict(inference), "outputs": {
        "format": settings.format, "preview": settings.preview, "volumes": settings.volumes,
        "skip_existing": skip_existing}, "compute": compute_report(inference, predictor), "part": part.to_dict()}
    pipeline = {"model": str(model), "plan": predictor.plan.to_dict(), "postprocessing":
                predictor.applied_postprocessing(), "training_data": record["training_data"],
                "warnings": [PHANTOM_WARNING] if record["phantom_only"] else []}  # fmt: skip
    manifest = RunManifest.start(out_dir, command="predict", settings=resolved, checkpoints=checkpoints,
                                 pipeline=pipeline, device=str(predictor.device),
                                 name=settings.run_file("run", ".json"), shared=True)  # fmt: skip
    return PredictOutputs(Path(out_dir), settings, manifest)


def model_record(predictor: Predictor, model: str | os.PathLike) -> tuple[dict[str, Any], list[Path]]:
    """What every output says about the model, and its checkpoint files.

    Returns:
        ``({"name", "sha256", "trained_on", "phantom_only", "training_data"}, checkpoints)``: the name is the
        checkpoint's file name, or for an ensemble ``"<folder> (<N> folds)"``; the SHA-256 is
        :func:`models_sha256`'s.
    """
    from medseg.runs.folder import find_checkpoint
    from medseg.runs.provenance import describe_models, phantom_only

    checkpoints = [Path(p) for p in predictor.sources] or [find_checkpoint(model)]
    name = checkpoints[0].name if len(checkpoints) == 1 else f"{Path(model).name} ({len(checkpoints)} folds)"
    record = {"name": name, "sha256": models_sha256(checkpoints),
              "trained_on": describe_models(predictor.training_data),
              "phantom_only": phantom_only(predictor.training_data),
              "training_data": [t.to_dict() for t in predictor.training_data]}
    return record, checkpoints


def models_sha256(checkpoints: list[Path]) -> str:
    """SHA-256 of the checkpoint, or for an ensemble of the folds' SHA-256s joined in fold order."""
    shas = [file_sha256(p) for p in checkpoints]
    return shas[0] if len(shas) == 1 else hashlib.sha256(",".join(shas).encode()).hexdigest()


def compute_report(inference: InferenceSettings, predictor: Predictor) -> dict[str, Any]:
    """run.json's ``compute``: the runtime and precision used (``runtime``, ``precision`` resolved; with
    OpenVINO its version), threads, the CPU's bfloat16 flags."""
    import torch

    from medseg.inference.cpu import cpu_bf16_flags, resolve_precision
    from medseg.inference.runtime import openvino_version, resolve_runtime

    runtime = resolve_runtime(inference.runtime, predictor.device)
    return {"runtime": runtime, "openvino": openvino_version() if runtime == "openvino" else None,
            "precision": resolve_precision(inference.precision, predictor.device),
            "threads": torch.get_num_threads(), "cpu_bf16_flags": list(cpu_bf16_flags())}
