"""Validation during training: sliding-window inference on whole preprocessed cases, Dice per region.

Regions follow LiTS: *liver* is every voxel labelled liver or tumor (label >= 1), *tumor* is label 2.
Dice per case comes from MONAI's ``compute_dice`` with ``ignore_empty=False``: a region absent from both
prediction and reference scores 1, absent from the reference but predicted scores 0 (the LiTS per-case
convention). The reported value per region is the mean over validation cases.

With ``postprocess`` given, each case's argmax is also post-processed as ``medseg predict`` does it
(:func:`medseg.inference.postprocess.postprocess_labels`, on the preprocessed grid) and scored again:
``liver_post`` / ``tumor_post``, so the curves show what the run's predictions will be, not only the raw
network output.

With partial annotations (``ignore_label``, issue #30) the prediction stays dense, post-processing runs on
the dense prediction, and Dice counts the reference's annotated voxels only
(:func:`medseg.labels.without_unannotated`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from monai.metrics import compute_dice

if TYPE_CHECKING:
    from medseg.inference.postprocess import PostprocessConfig
    from medseg.inference.sliding_window import WindowSettings

__all__ = ["LOWEST_LABEL", "region_dice", "validate_cases"]

logger = logging.getLogger(__name__)

#: Region name -> the smallest label in it (liver includes tumor); :data:`medseg.evaluation.result.REGIONS`
#: is the tuple of the same region names.
LOWEST_LABEL = {"liver": 1, "tumor": 2}


def _region_masks(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(X, Y, Z)`` integer labels -> ``(1, R, X, Y, Z)`` boolean masks of the regions (liver: label >= 1,
    then one region per higher class)."""
    masks = [labels >= 1] + [labels == c for c in range(2, num_classes)]
    return torch.stack(masks)[None]


def region_dice(pred: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray, *, num_classes: int = 3,
                ignore_label: int | None = None) -> dict:
    """Dice of each region for one case (see the module docstring). ``pred``/``ref``: ``(X, Y, Z)`` labels;
    ``ignore_label``: the reference's value of unannotated voxels, which are not scored."""
    pred, ref = _as_tensor(pred), _as_tensor(ref)
    if ignore_label is not None:
        annotated = ref != ignore_label
        pred, ref = torch.where(annotated, pred, 0), torch.where(annotated, ref, 0)
    dice = compute_dice(
        _region_masks(pred, num_classes).float(), _region_masks(ref, num_classes).float(),
        include_background=True, ignore_empty=False,
    )[0]  # fmt: skip
    names = ["liver", *(f"class{c}" if c != 2 else "tumor" for c in range(2, num_classes))]
    return {name: float(v) for name, v in zip(names, dice)}


def _as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A CPU tensor; arrays are copied (memory maps are read-only)."""
    return x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x))


@torch.no_grad()
def validate_cases(
    model: torch.nn.Module,
    cache_dir,
    case_ids: Sequence[str],
    window: WindowSettings,
    *,
    postprocess: PostprocessConfig | None = None,
    spacing_mm: Sequence[float] | None = None,
    ignore_label: int | None = None,
) -> dict[str, float]:
    """Mean Dice per region over ``case_ids`` of a preprocessed cache, plus ``mean_foreground_dice`` (of
    the raw regions).

    Args:
        model: The network (put in ``eval()`` mode and returned to its previous mode afterwards).
        cache_dir: A preprocessed cache (:func:`medseg.preprocessing.preprocess_dataset`).
        case_ids: Labelled cases of the cache to score.
        window: The sliding window (:class:`~medseg.inference.sliding_window.WindowSettings`: patch size,
            classes, overlap, batch, context slices, device, AMP).
        postprocess: A :class:`~medseg.inference.postprocess.PostprocessConfig`: also report each region
            after post-processing (``<region>_post``). Needs ``spacing_mm``, the cache's grid spacing.
        spacing_mm: Spacing ``(X, Y, Z)`` of the cache's grid, in mm.
        ignore_label: The references' value of unannotated voxels (partial annotations): not scored.
    """
    from medseg.inference.sliding_window import predict_logits
    from medseg.preprocessing import load_preprocessed

    num_classes = window.num_classes
    was_training = model.training
    model.eval()
    per_case = []
    try:
        for case_id in case_ids:
            case = load_preprocessed(cache_dir, case_id)
            image = np.array(case.image, dtype=np.float32)  # a writable copy of the memory map
            image = image[None] if image.ndim == 3 else image
            logits = predict_logits(model, torch.from_numpy(image), window)
            pred, ref = logits.argmax(0), np.asarray(case.label)
            dice = region_dice(pred, ref, num_classes=num_classes, ignore_label=ignore_label)
            if postprocess is not None:
                from medseg.inference.postprocess import postprocess_labels

                post = postprocess_labels(pred.numpy(), spacing_mm=spacing_mm, config=postprocess)
                post_dice = region_dice(post, ref, num_classes=num_classes, ignore_label=ignore_label)
                dice.update({f"{k}_post": v for k, v in post_dice.items()})
            per_case.append(dice)
    finally:
        model.train(was_training)
    result = {name: float(np.mean([d[name] for d in per_case])) for name in per_case[0]} if per_case else {}
    raw = [v for k, v in result.items() if not k.endswith("_post")]
    result["mean_foreground_dice"] = float(np.mean(raw)) if raw else math.nan
    logger.debug("validation on %d cases: %s", len(per_case), result)
    return result
