"""What inference needs from a run, read once from a checkpoint and checked: :class:`RunRecord`.

A training checkpoint (:mod:`medseg.runs.checkpoint`) holds the network's ``model_config``, the
preprocessing ``plan`` and an ``inference`` section::

    {"patch_size": [...], "spatial_dims": int, "num_classes": int, "context_slices": int,
     "mirror_axes": [...], "labels": {"0": "background", ...}, "postprocessing": {...}}

:meth:`RunRecord.from_checkpoint` turns these into typed, frozen fields, and a malformed checkpoint fails
here with one line naming the file and the key, not later inside a forward pass. The optional keys have
one documented default each (older checkpoints lack ``mirror_axes``; see :class:`RunRecord`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from medseg.errors import DataError, MedsegError
from medseg.labels import LITS_LABELS
from medseg.preprocessing.plan import PreprocessingPlan
from medseg.runs.provenance import UNKNOWN, TrainingData

__all__ = ["RunRecord", "ScanPlan"]

_REQUIRED = ("model", "model_config", "plan", "inference")


class ScanPlan(Protocol):
    """What inference reads of a preprocessing plan that is not medseg's own: an imported tool's plan
    (:class:`medseg.interop.nnunet.NnUNetPlan`), which prepares and restores scans itself
    (``prepare_scan``; the scan checks read ``clip_hu`` and ``target_spacing_mm``, ``run.json`` its
    ``to_dict``)."""

    @property
    def clip_hu(self) -> tuple[float, float]: ...

    @property
    def target_spacing_mm(self) -> tuple[float, ...]: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RunRecord:
    """The settings of a trained run that inference needs (everything but the weights).

    Attributes:
        model_config: The network's builder config (:func:`medseg.models.build_model`), read-only.
        plan: The run's :class:`~medseg.preprocessing.PreprocessingPlan` (an imported model's own plan, a
            :class:`ScanPlan`, for a run read from another tool's folder).
        spatial_dims: 2 or 3 (default: ``model_config["spatial_dims"]``).
        patch_size: Training patch size (the sliding window), ``spatial_dims`` positive entries.
        num_classes: Output classes, background included (default: ``model_config["out_channels"]``).
        context_slices: 2.5D neighbours per side for 2D models (default 0).
        mirror_axes: Spatial axes mirrored in training, the ones test-time augmentation may mirror
            (``None``: not recorded, every axis).
        labels: Class index (str) -> name, read-only (default: the LiTS map of :mod:`medseg.labels`).
        postprocessing: The run's ``postprocessing`` section as saved, read-only (default: empty, i.e.
            the defaults of :class:`~medseg.inference.postprocess.PostprocessConfig`, which parses it).
        source: The checkpoint file it was read from (``None`` for an in-memory checkpoint).
        training_data: What the model was trained on (:class:`~medseg.runs.provenance.TrainingData`;
            :data:`~medseg.runs.provenance.UNKNOWN` for checkpoints written before the record existed).
    """

    model_config: Mapping[str, Any]
    plan: PreprocessingPlan | ScanPlan
    spatial_dims: int
    patch_size: tuple[int, ...]
    num_classes: int
    context_slices: int = 0
    mirror_axes: tuple[int, ...] | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: LITS_LABELS)
    postprocessing: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    source: Path | None = None
    training_data: TrainingData = UNKNOWN

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any], *, source: str | os.PathLike | None = None
                        ) -> RunRecord:
        """Read and check the run settings of a checkpoint dict (:func:`medseg.runs.load_checkpoint`).

        Raises:
            DataError: A key is missing or holds a value of the wrong kind; the message names ``source``.
        """
        missing = [k for k in _REQUIRED if k not in checkpoint]
        if missing:
            raise DataError(f"checkpoint lacks {', '.join(missing)} (not a medseg training checkpoint?)", path=source)
        model_config = _mapping(checkpoint["model_config"], "model_config", source)
        if not isinstance(model_config.get("name"), str):
            raise DataError(f"checkpoint model_config.name must be a model name, got {model_config.get('name')!r}",
                            path=source)  # fmt: skip
        info = _mapping(checkpoint["inference"], "inference", source)
        spatial_dims = _integer(info.get("spatial_dims", model_config.get("spatial_dims")), "inference.spatial_dims",
                                source, allowed=(2, 3))
        patch = _integers(info.get("patch_size"), "inference.patch_size", source, minimum=1)
        if len(patch) != spatial_dims:
            raise DataError(f"inference.patch_size {patch} does not match spatial_dims {spatial_dims}", path=source)
        mirror = info.get("mirror_axes")
        mirror_axes = None if mirror is None else _integers(mirror, "inference.mirror_axes", source, minimum=0)
        if mirror_axes is not None and any(a >= spatial_dims for a in mirror_axes):
            raise DataError(f"inference.mirror_axes {mirror_axes} must be below spatial_dims {spatial_dims}",
                            path=source)
        labels = _mapping(info.get("labels", LITS_LABELS), "inference.labels", source)
        postprocessing = _mapping(info.get("postprocessing") or {}, "inference.postprocessing", source)
        return cls(
            model_config=MappingProxyType(dict(model_config)),
            plan=_plan(checkpoint["plan"], source),
            spatial_dims=spatial_dims,
            patch_size=patch,
            num_classes=_integer(info.get("num_classes", model_config.get("out_channels")), "inference.num_classes",
                                 source, minimum=2),
            context_slices=_integer(info.get("context_slices") or 0, "inference.context_slices", source, minimum=0),
            mirror_axes=mirror_axes,
            labels=MappingProxyType({str(k): str(v) for k, v in labels.items()}),
            postprocessing=MappingProxyType(dict(postprocessing)),
            source=None if source is None else Path(source),
            training_data=TrainingData.from_dict(checkpoint.get("training_data")),
        )


def _mapping(value: Any, key: str, source) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DataError(f"checkpoint {key} must be a mapping, got {type(value).__name__}", path=source)
    return value


def _integer(value: Any, key: str, source, *, minimum: int | None = None, allowed: tuple[int, ...] = ()) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"checkpoint {key} must be an integer, got {value!r}", path=source)
    if (allowed and value not in allowed) or (minimum is not None and value < minimum):
        rule = f"one of {list(allowed)}" if allowed else f">= {minimum}"
        raise DataError(f"checkpoint {key} must be {rule}, got {value}", path=source)
    return value


def _integers(value: Any, key: str, source, *, minimum: int) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise DataError(f"checkpoint {key} must be a list of integers, got {value!r}", path=source)
    return tuple(_integer(v, key, source, minimum=minimum) for v in value)


def _plan(value: Any, source) -> PreprocessingPlan:
    try:
        return PreprocessingPlan.from_dict(_mapping(value, "plan", source))
    except MedsegError as exc:
        if isinstance(exc, DataError) and exc.path is not None:
            raise
        raise DataError(f"checkpoint plan: {exc}", path=source) from None
    except (TypeError, ValueError) as exc:
        raise DataError(f"checkpoint plan is invalid ({exc})", path=source) from None
