"""The training loss of a pipeline, built once: the ``loss`` section, deep supervision, the plan's spacing.

:func:`build_objective` builds the loss from :class:`~medseg.training.config.LossConfig` with
:func:`medseg.losses.build_loss` (its parameter checks run there, before any data is read) and wraps it
in :class:`~medseg.losses.DeepSupervisionLoss` when the network has deep-supervision heads (nnU-Net's
weights ``1/2^k``, normalised, or equal ones). With ``data.ignore_label`` every term gets it as
``ignore_index`` (partial annotations: the loss of the annotated voxels alone, at every supervised scale).

Distance losses (``hausdorff``, ``boundary``) measure in millimetres on the preprocessed grid, whose
spacing is the preprocessing plan's, which for a new run is known only after the data set's fingerprint.
They are therefore built with a unit placeholder and given the plan's spacing by :func:`use_plan_spacing`
before the first step; a pipeline file may not set ``spacing_mm`` (:mod:`medseg.training.rules`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from medseg.training.config import LossConfig, LossTermConfig, PipelineConfig

__all__ = ["build_objective", "loss_spec", "use_plan_spacing"]


def _spacing_params(name: str, spatial_dims: int) -> dict[str, Any]:
    from medseg.losses import loss_parameters

    return {"spacing_mm": (1.0,) * spatial_dims} if "spacing_mm" in loss_parameters(name) else {}


def _ignore_params(name: str, ignore_label: int | None) -> dict[str, Any]:
    from medseg.losses import loss_parameters

    return {} if ignore_label is None or "ignore_index" not in loss_parameters(name) else {"ignore_index": ignore_label}


def _term_spec(term: LossTermConfig, spatial_dims: int, ignore_label: int | None = None) -> dict[str, Any]:
    params = {**term.params, **_spacing_params(term.name, spatial_dims), **_ignore_params(term.name, ignore_label)}
    spec: dict[str, Any] = {"name": term.name, "weight": term.weight, "params": params}
    if term.ramp is not None:
        spec["ramp"] = dataclasses.asdict(term.ramp)
    return spec


def loss_spec(loss: LossConfig, *, spatial_dims: int, ignore_label: int | None = None) -> Any:
    """The :func:`medseg.losses.build_loss` spec of a loss section (placeholder spacing where needed; every
    term gets ``ignore_index=ignore_label``, the data set's value of unannotated voxels, when given)."""
    if loss.terms:
        return [_term_spec(t, spatial_dims, ignore_label) for t in loss.terms]
    params = {**loss.params, **_spacing_params(loss.name, spatial_dims), **_ignore_params(loss.name, ignore_label)}
    return {"name": loss.name, "params": params}


def build_objective(config: PipelineConfig, model: nn.Module) -> nn.Module:
    """The pipeline's loss for ``model``, with deep supervision over its heads.

    Raises:
        ConfigError: A loss parameter out of range, naming the loss and the parameter.
    """
    from medseg.losses import DeepSupervisionLoss, build_loss

    loss = build_loss(loss_spec(config.loss, spatial_dims=config.spatial_dims, ignore_label=config.data.ignore_label))
    heads = len(getattr(model, "_head_strides", []))
    if heads:
        weights = [1.0] * (heads + 1) if config.training.deep_supervision_weights == "equal" else None
        loss = DeepSupervisionLoss(loss, heads + 1, weights=weights)
    return loss


def use_plan_spacing(loss: nn.Module, spacing_mm: Sequence[float], *, spatial_dims: int) -> list[str]:
    """Give every distance term of ``loss`` the plan's grid spacing (``(X, Y, Z)`` mm; 2D patches lie in
    the X-Y plane, so they get ``(X, Y)``). Returns the names of the modules that got it."""
    spacing = tuple(float(s) for s in spacing_mm)[:spatial_dims]
    named = []
    for name, module in loss.named_modules():
        if hasattr(module, "spacing_mm"):
            module.spacing_mm = spacing
            named.append(name or type(module).__name__)
    return named
