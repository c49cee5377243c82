"""Models trained by other tools in medseg's predictor: nnU-Net v2 folders (:mod:`medseg.interop.nnunet`).

:func:`nnunet_predictor` turns an nnU-Net trained-model folder into a :class:`~medseg.inference.Predictor`
(its folds a :class:`~medseg.inference.ensemble.FoldEnsemble`), and the three steps the predictor takes
around the network dispatch on the plan: medseg's own plan goes through
:func:`~medseg.inference.prepare.prepare_scan` and :func:`~medseg.inference.restore.restore_argmax`, an
nnU-Net plan through its own :meth:`~medseg.interop.nnunet.NnUNetPlan.prepare_scan` and record. What lies
between (sliding window with nnU-Net's layout, mirroring, fold ensembles, air skipping, coarse-to-fine) and
after (probability maps, label mapping, outputs) is medseg's.

An imported model gets no post-processing unless asked for (``--postprocessing``/``settings``): its raw
output equals nnU-Net's. nnU-Net's ``postprocessing.pkl`` is a pickle and is never opened.

Exactness against ``nnUNetPredictor`` (tests/interop/nnunet): ``--mode full --no-skip-air`` runs the
same windows on the same inputs; nnU-Net accumulates its blend in float16, medseg in float32, and a fold
ensemble here averages probabilities where nnU-Net averages logits. Coarse-to-fine and air skipping work
for imported models as for medseg's (the coarse pass resamples nnU-Net's preprocessed image trilinearly),
but they are not nnU-Net's: use ``--mode full --no-skip-air`` for its exact output.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from medseg.inference.crf import CrfSettings, refine_labels
from medseg.inference.ensemble import FoldEnsemble
from medseg.inference.postprocess import NO_POSTPROCESSING
from medseg.inference.restore import restore_argmax, restore_probabilities_in_box
from medseg.io.volume import Volume
from medseg.runs.device import resolve_device
from medseg.runs.provenance import TrainingData
from medseg.runs.record import RunRecord

__all__ = ["crf_labels", "mapped_scores", "nnunet_predictor", "prepare_input", "restore_labels",
           "restore_probabilities"]


def nnunet_predictor(cls: type, path: str | os.PathLike, *, device: str | torch.device = "auto", settings=None,
                     folds: Sequence[int] | None = None, checkpoint: str = "final"):
    """A ``cls`` (:class:`~medseg.inference.Predictor`) for an nnU-Net v2 trained-model folder."""
    from medseg.interop.nnunet import load_nnunet_model

    model = load_nnunet_model(path, folds=folds, checkpoint=checkpoint)
    device = resolve_device(device)
    networks = [n.to(device) for n in model.networks]
    network = networks[0] if len(networks) == 1 else FoldEnsemble(networks).eval()
    kwargs = {} if settings is None else {"settings": settings}
    d = model.description  # dataset.json's name and numTraining, the folder's trainer, plans, configuration
    trained_on = TrainingData(name=str(d["dataset"]), n_cases=d.get("n_training"), framework="nnunet",
                              trainer=f"{d['trainer']}__{d['plans']}__{d['configuration']}")
    patch = tuple(model.plan.patch_size)
    runs = tuple(RunRecord(model_config=MappingProxyType(dict(d)), plan=model.plan, spatial_dims=len(patch),
                           patch_size=patch, num_classes=model.num_classes, mirror_axes=model.mirror_axes,
                           labels=MappingProxyType(dict(model.labels)), source=Path(source), training_data=trained_on)
                 for source in model.sources)  # one record per fold, as for medseg's own folds
    return cls(network=network, run=runs[0], postprocessing=NO_POSTPROCESSING, device=device, members=len(networks),
               sources=model.sources, fold_runs=runs if len(runs) > 1 else (), **kwargs)


def prepare_input(volume: Volume, plan: Any, *, air_threshold_hu: float | None):
    """``(image, record, body)`` of ``volume`` as ``plan`` preprocesses it (see the module doc)."""
    if hasattr(plan, "prepare_scan"):
        return plan.prepare_scan(volume, air_threshold_hu=air_threshold_hu)
    from medseg.inference.prepare import prepare_scan

    return prepare_scan(volume, plan, air_threshold_hu=air_threshold_hu)


def restore_labels(logits: torch.Tensor, record: Any) -> np.ndarray:
    """uint8 argmax labels on the scan's grid."""
    if hasattr(record, "restore_argmax"):
        return record.restore_argmax(logits)
    return restore_argmax(logits, record)


def restore_probabilities(logits: torch.Tensor, record: Any) -> np.ndarray:
    """float32 softmax probabilities ``(K, *scan)`` on the scan's grid (an nnU-Net record resamples the
    logits first, as nnU-Net; medseg's resamples the probabilities)."""
    if hasattr(record, "restore_probabilities"):
        return record.restore_probabilities(logits)
    from medseg.preprocessing import restore_to_scan

    return restore_to_scan(torch.softmax(logits, dim=0), record)


def crf_labels(labels: np.ndarray, logits: torch.Tensor, record: Any, volume: Volume, settings: CrfSettings
               ) -> np.ndarray:
    """``labels`` (the restored argmax) refined by the dense CRF (:func:`~medseg.inference.crf.refine_labels`)
    with the probabilities restored only inside its liver box (medseg's record; an nnU-Net record restores
    the whole scan and crops)."""

    def in_box(box: tuple[slice, ...]) -> np.ndarray:
        if hasattr(record, "restore_probabilities"):
            return record.restore_probabilities(logits)[(slice(None), *box)]
        return restore_probabilities_in_box(logits, record, box)

    return refine_labels(labels, in_box, volume.array, spacing_mm=volume.spacing_mm, settings=settings)


def mapped_scores(scores: torch.Tensor, mapping: Any) -> torch.Tensor:
    """``(3, ...)`` log probabilities of background, liver and tumor from ``(K, ...)`` scores of a model with
    other classes, under a :class:`~medseg.io.label_map.LabelMapping` (``--labels liver=5``): each region's
    probability is the sum of its classes', everything unmapped is background."""
    probabilities = torch.softmax(scores.float(), dim=0)
    liver = [int(v) for v in mapping.liver]
    tumor = [int(v) for v in mapping.tumor]
    grouped = torch.stack([probabilities[liver].sum(0) if liver else torch.zeros_like(probabilities[0]),
                           probabilities[tumor].sum(0) if tumor else torch.zeros_like(probabilities[0])])
    background = (1.0 - grouped.sum(0)).clamp_(min=0.0)
    return torch.log(torch.cat([background[None], grouped]).clamp_(min=1e-35))
