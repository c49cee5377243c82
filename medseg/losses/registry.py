"""Name -> loss registry, so pipeline YAML files name a loss and its parameters.

``build_loss`` accepts the three forms a pipeline file uses::

    loss: dice_ce                                   # a name
    loss: {name: focal, params: {gamma: 2.0}}       # a name with parameters
    loss:                                           # a list of weighted terms (a CompoundLoss)
      - {name: dice, weight: 1.0, params: {include_background: false}}
      - {name: boundary, weight: 0.01, ramp: {per_epoch: 0.01, max: 1.0}}

Unknown names, parameters or keys raise :class:`~medseg.errors.ConfigError` listing the valid ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from medseg.errors import ConfigError
from medseg.losses.compound import CompoundLoss, LossTerm
from medseg.losses.distance import BoundaryLoss, HausdorffDTLoss
from medseg.losses.pixel import BorderCrossEntropyLoss, CrossEntropyLoss, FocalLoss
from medseg.losses.region import DiceLoss, FocalTverskyLoss, TverskyLoss

__all__ = ["LOSSES", "DiceCE", "build_loss", "get_loss", "loss_parameters"]


@dataclass(frozen=True, kw_only=True)
class DiceCE:
    """Dice + cross-entropy, the nnU-Net default (Isensee et al., Nature Methods 2021): the settings of the
    ``dice_ce`` loss, which :func:`get_loss` builds with :meth:`build`.

    Attributes:
        activation: ``"softmax"`` or ``"sigmoid"``, for both terms.
        include_background: Dice over the background class too.
        batch: Dice over the whole batch instead of per sample.
        smooth_nr: Dice numerator smoothing.
        smooth_dr: Dice denominator smoothing.
        class_weights: Per-class weights of the cross-entropy term (``None``: equal).
        dice_weight: Weight of the Dice term.
        ce_weight: Weight of the cross-entropy term.
        ignore_index: Target value that neither term counts (partial annotations; ``None``: none).
    """

    activation: str = "softmax"
    include_background: bool = True
    batch: bool = False
    smooth_nr: float = 1e-5
    smooth_dr: float = 1e-5
    class_weights: Sequence[float] | None = None
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    ignore_index: int | None = None

    def build(self) -> CompoundLoss:
        """The loss: ``dice_weight * Dice + ce_weight * CE``."""
        dice = _dice(self.activation, self.include_background, self.batch, self.smooth_nr, self.smooth_dr,
                     self.ignore_index)
        ce = CrossEntropyLoss(activation=self.activation, class_weights=self.class_weights,
                              ignore_index=self.ignore_index)
        return CompoundLoss([LossTerm("dice", dice, self.dice_weight), LossTerm("ce", ce, self.ce_weight)])


def dice_focal(
    *,
    activation: str = "softmax",
    include_background: bool = True,
    batch: bool = False,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | None = None,
    dice_weight: float = 1.0,
    focal_weight: float = 1.0,
    ignore_index: int | None = None,
) -> CompoundLoss:
    """Dice + focal loss; ``gamma`` and ``alpha`` go to the focal term."""
    dice = _dice(activation, include_background, batch, 1e-5, 1e-5, ignore_index)
    focal = FocalLoss(activation=activation, gamma=gamma, alpha=alpha, ignore_index=ignore_index)
    return CompoundLoss([LossTerm("dice", dice, dice_weight), LossTerm("focal", focal, focal_weight)])


def _dice(activation, include_background, batch, smooth_nr, smooth_dr, ignore_index=None) -> DiceLoss:
    return DiceLoss(
        activation=activation,
        include_background=include_background,
        batch=batch,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        ignore_index=ignore_index,
    )


def compound(*, terms: Sequence[Mapping]) -> CompoundLoss:
    """A :class:`CompoundLoss` from a list of ``{name, weight=1, params={}, ramp={per_epoch, max, min}}``."""
    if isinstance(terms, (str, Mapping)) or not isinstance(terms, Sequence) or not terms:
        raise ConfigError(
            f"compound loss: terms must be a non-empty list of {{name, weight, params, ramp}}, got {terms!r}"
        )
    built = [_term(spec, i) for i, spec in enumerate(terms)]
    try:
        return CompoundLoss(built)
    except ValueError as exc:
        raise ConfigError(f"compound loss: {exc}") from None


_TERM_KEYS = ("name", "weight", "params", "ramp")
_RAMP_KEYS = ("per_epoch", "max", "min")


def _term(spec: Mapping | str, index: int) -> LossTerm:
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError(f"loss term {index}: expected a mapping with a 'name', got {spec!r}")
    unknown = sorted(set(spec) - set(_TERM_KEYS))
    if unknown:
        raise ConfigError(
            f"loss term {index} ({spec['name']}): unknown key(s) {unknown}; valid: {', '.join(_TERM_KEYS)}"
        )
    ramp = dict(spec.get("ramp") or {})
    bad = sorted(set(ramp) - set(_RAMP_KEYS))
    if bad:
        raise ConfigError(
            f"loss term {index} ({spec['name']}): unknown ramp key(s) {bad}; valid: {', '.join(_RAMP_KEYS)}"
        )
    try:
        weight = float(spec.get("weight", 1.0))
        per_epoch, low = float(ramp.get("per_epoch", 0.0)), float(ramp.get("min", 0.0))
        high = None if ramp.get("max") is None else float(ramp["max"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"loss term {index} ({spec['name']}): weight and ramp values must be numbers ({exc})"
        ) from None
    loss = get_loss(spec["name"], **dict(spec.get("params") or {}))
    return LossTerm(str(spec["name"]), loss, weight, per_epoch, low, high)


#: Name -> a loss class, a function returning a loss, or a frozen settings class with ``build()``.
LOSSES: dict[str, Callable[..., nn.Module | DiceCE]] = {
    "dice": DiceLoss,
    "tversky": TverskyLoss,
    "focal_tversky": FocalTverskyLoss,
    "focal": FocalLoss,
    "ce": CrossEntropyLoss,
    "border_ce": BorderCrossEntropyLoss,
    "hausdorff": HausdorffDTLoss,
    "boundary": BoundaryLoss,
    "dice_ce": DiceCE,
    "dice_focal": dice_focal,
    "compound": compound,
}


def loss_parameters(name: str) -> dict[str, inspect.Parameter]:
    """Keyword parameters accepted by loss ``name`` (following ``**kwargs`` to the base class)."""
    builder = _builder(name)
    params: dict[str, inspect.Parameter] = {}
    owners = builder.__mro__ if isinstance(builder, type) else (builder,)
    for owner in owners:
        init = owner.__init__ if isinstance(builder, type) else owner
        if isinstance(builder, type) and "__init__" not in vars(owner):
            continue
        sig = inspect.signature(init)
        for p in sig.parameters.values():
            if p.kind is p.KEYWORD_ONLY and p.name not in params:
                params[p.name] = p
        if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            break
    return params


def _builder(name: str) -> Callable[..., nn.Module | DiceCE]:
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; valid names: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]


def get_loss(name: str, **params) -> nn.Module:
    """Build loss ``name`` with keyword ``params``.

    Every loss takes logits ``(B, C, H, W[, D])`` and an integer target ``(B, 1, H, W[, D])``; see
    ``docs/losses.md`` for names and parameters.

    Raises:
        ConfigError: unknown name or parameter (listing the valid ones), a missing required parameter
            (``spacing_mm`` for ``hausdorff``), or an invalid value.
    """
    builder = _builder(name)
    valid = loss_parameters(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(f"loss {name!r}: unknown parameter(s) {unknown}; valid: {', '.join(sorted(valid))}")
    missing = sorted(k for k, p in valid.items() if p.default is inspect.Parameter.empty and k not in params)
    if missing:
        raise ConfigError(f"loss {name!r} needs parameter(s) {', '.join(missing)}")
    try:
        loss = builder(**params)
        return loss.build() if isinstance(loss, DiceCE) else loss
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"loss {name!r}: {exc}") from None


def build_loss(spec: str | Mapping | Sequence[Mapping]) -> nn.Module:
    """Build a loss from a pipeline-file spec: a name, ``{name, params}``, or a list of weighted terms.

    A mapping with ``weight`` or ``ramp`` is treated as a one-term :class:`CompoundLoss`.
    """
    if isinstance(spec, str):
        return get_loss(spec)
    if isinstance(spec, Mapping):
        if "weight" in spec or "ramp" in spec:
            return compound(terms=[spec])
        unknown = sorted(set(spec) - {"name", "params"})
        if "name" not in spec or unknown:
            raise ConfigError(f"loss spec {dict(spec)!r}: expected keys name, params (and optionally weight, ramp)")
        return get_loss(spec["name"], **dict(spec.get("params") or {}))
    if isinstance(spec, Sequence):
        return compound(terms=spec)
    raise ConfigError(f"loss spec must be a name, a mapping or a list of terms, got {type(spec).__name__}")
