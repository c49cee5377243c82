"""Region losses: soft Dice, Tversky and focal Tversky (one Tversky computation underneath).

Our own code rather than MONAI's ``DiceLoss``/``TverskyLoss``: the computation is three sums (tests show
equal values to MONAI's to 1e-5), and this way one ``activation`` argument replaces MONAI's boolean flags,
half precision is computed in float32, and the target is always the integer map ``(B, 1, ...)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medseg.losses._functional import (
    activate,
    as_class_vector,
    reduce_loss,
    select_channels,
    tversky_per_class,
)
from medseg.losses.base import SegLoss

__all__ = ["DiceLoss", "FocalTverskyLoss", "TverskyLoss"]


class _OverlapLoss(SegLoss):
    """The counting options of the overlap losses (arguments as :class:`TverskyLoss` without its ``alpha`` and
    ``beta``): which channels and samples are counted, class weights, smoothing, reduction, ignored voxels."""

    def __init__(
        self,
        *,
        activation: str = "softmax",
        include_background: bool = True,
        batch: bool = False,
        class_weights: Sequence[float] | None = None,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        reduction: str = "mean",
        ignore_index: int | None = None,
    ):
        super().__init__(activation=activation, reduction=reduction, ignore_index=ignore_index)
        if smooth_nr < 0 or smooth_dr < 0:
            raise ValueError(f"smooth_nr={smooth_nr} and smooth_dr={smooth_dr} must be >= 0")
        self.include_background = bool(include_background)
        self.batch = bool(batch)
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)
        self.register_buffer("class_weights", as_class_vector("class_weights", class_weights), persistent=False)


class TverskyLoss(_OverlapLoss):
    """Tversky loss ``1 - TI`` per class (Salehi et al., MLMI 2017), with ``alpha`` on FP and ``beta`` on FN.

    Args:
        alpha: Weight of false positives (default 0.3).
        beta: Weight of false negatives (default 0.7; ``beta > alpha`` favours recall).
        activation: ``"softmax"`` or ``"sigmoid"``.
        include_background: Keep channel 0 in the average (ignored for a single sigmoid channel).
        batch: Sum counts over the batch before dividing ("batch Dice", as nnU-Net) instead of per sample.
        class_weights: One weight per logit channel C (the background entry is dropped with it).
        smooth_nr: Added to the numerator.
        smooth_dr: Added to the denominator; an absent class predicted absent gives loss 0, not NaN.
        reduction: ``"mean"``/``"sum"`` over samples and classes, or ``"none"``: ``(B, C')`` (``(1, C')``
            with ``batch``), C' the channels kept.
        ignore_index: Label value of voxels that are not annotated: they count in none of tp, fp, fn
            (nnU-Net's ignore label), so the loss is that of the annotated voxels alone.

    Shapes: logits ``(B, C, H, W[, D])``, target ``(B, 1, H, W[, D])`` integer labels.
    """

    def __init__(self, *, alpha: float = 0.3, beta: float = 0.7, **kwargs):
        if alpha < 0 or beta < 0 or alpha + beta <= 0:
            raise ValueError(f"alpha={alpha} and beta={beta} must be non-negative and not both zero")
        super().__init__(**kwargs)  # the counting options of _OverlapLoss
        self.alpha, self.beta = float(alpha), float(beta)

    def _index(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, onehot, mask = self._prepare(logits, target)
        probs = activate(logits, self.activation)
        probs = select_channels(probs if mask is None else probs * mask, self.include_background)
        onehot = select_channels(onehot, self.include_background)
        return tversky_per_class(
            probs,
            onehot,
            alpha=self.alpha,
            beta=self.beta,
            smooth_nr=self.smooth_nr,
            smooth_dr=self.smooth_dr,
            batch=self.batch,
        )

    def _per_class(self, index: torch.Tensor) -> torch.Tensor:
        return 1 - index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss from logits ``(B, C, ...)`` and integer target ``(B, 1, ...)``."""
        loss = self._per_class(self._index(logits, target))
        if self.class_weights is not None:
            weights = self.class_weights.to(loss)
            if weights.numel() != 1 and not self.include_background and logits.shape[1] > 1:
                weights = weights[1:]
            if weights.numel() not in (1, loss.shape[1]):
                raise ValueError(
                    f"class_weights has {self.class_weights.numel()} values for {logits.shape[1]} channels"
                )
            loss = loss * weights
        return reduce_loss(loss, self.reduction)


class DiceLoss(TverskyLoss):
    """Soft Dice loss ``1 - (2 tp + s_nr) / (2 tp + fp + fn + s_dr)`` per class (Milletari et al., V-Net, 3DV 2016).

    Same arguments as :class:`TverskyLoss` without ``alpha``/``beta`` (Dice is Tversky with 0.5/0.5).
    """

    def __init__(
        self,
        *,
        activation: str = "softmax",
        include_background: bool = True,
        batch: bool = False,
        class_weights: Sequence[float] | None = None,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        reduction: str = "mean",
        ignore_index: int | None = None,
    ):
        # Tversky(0.5, 0.5) with halved smoothing equals (2 tp + s_nr) / (2 tp + fp + fn + s_dr).
        super().__init__(
            alpha=0.5,
            beta=0.5,
            activation=activation,
            include_background=include_background,
            batch=batch,
            class_weights=class_weights,
            smooth_nr=smooth_nr / 2,
            smooth_dr=smooth_dr / 2,
            reduction=reduction,
            ignore_index=ignore_index,
        )


class FocalTverskyLoss(TverskyLoss):
    """Focal Tversky loss ``(1 - TI)^gamma`` per class (Abraham & Khan, ISBI 2019).

    The paper writes the exponent as ``1/gamma`` with ``gamma = 4/3``; here ``gamma`` is the exponent itself
    (default 0.75 = 3/4). Other arguments as :class:`TverskyLoss`.
    """

    def __init__(self, *, gamma: float = 0.75, **kwargs):
        super().__init__(**kwargs)
        if not gamma > 0:
            raise ValueError(f"gamma={gamma} must be > 0")
        self.gamma = float(gamma)

    def _per_class(self, index: torch.Tensor) -> torch.Tensor:
        # clamp: d/dx x^gamma is infinite at 0 for gamma < 1
        return (1 - index).clamp_min(torch.finfo(index.dtype).eps).pow(self.gamma)
