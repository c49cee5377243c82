"""Pure tensor functions behind every medseg loss: target encoding, activation, per-class region terms,
per-voxel classification terms and the one reduction helper.

Shapes: logits ``(B, C, H, W[, D])``, integer targets ``(B, 1, H, W[, D])``. Every function computes in
float32 when given float16/bfloat16 (AMP-safe) and keeps float64 when given float64 (for ``gradcheck``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "ACTIVATIONS",
    "REDUCTIONS",
    "activate",
    "annotated_mask",
    "check_ignore_index",
    "check_inputs",
    "encode_target",
    "focal_per_voxel",
    "masked_mean",
    "reduce_loss",
    "select_channels",
    "to_compute_dtype",
    "tversky_per_class",
]

ACTIVATIONS = ("softmax", "sigmoid")
REDUCTIONS = ("mean", "sum", "none")


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError`` naming the argument."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")
    return value  # type: ignore[return-value]


def as_class_vector(name: str, values: float | Sequence[float] | None) -> torch.Tensor | None:
    """A non-negative per-class weight vector (1-D float tensor), or ``None``."""
    if values is None:
        return None
    vec = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if not torch.isfinite(vec).all() or (vec < 0).any():
        raise ValueError(f"{name}={list(map(float, vec))} must hold finite, non-negative numbers")
    return vec


def to_compute_dtype(x: torch.Tensor) -> torch.Tensor:
    """Cast half-precision tensors to float32; keep float32/float64 as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def check_ignore_index(ignore_index: int | None) -> int | None:
    """``ignore_index`` as an int (or ``None``); ``ValueError`` for a bool, a fraction or a negative value."""
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not float(ignore_index).is_integer() or int(ignore_index) < 0:
        raise ValueError(f"ignore_index={ignore_index!r} must be a non-negative integer label value or None")
    return int(ignore_index)


def annotated_mask(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor | None:
    """``target != ignore_index`` ``(B, 1, ...)`` (bool), the annotated voxels; ``None`` without an ignore value."""
    return None if ignore_index is None else target != ignore_index


def check_inputs(
    logits: torch.Tensor, target: torch.Tensor, *, activation: str, ignore_index: int | None = None
) -> None:
    """Validate logits ``(B, C, H, W[, D])`` against an integer target ``(B, 1, H, W[, D])``.

    ``ignore_index`` (a value outside the class labels) may occur in ``target`` besides the class labels.

    Raises:
        ValueError: wrong rank, mismatched shapes, a single softmax channel, label values outside
            ``[0, C)`` (``[0, 1]`` for a single sigmoid channel), or an ``ignore_index`` that is a class
            label. Each message names the argument.
    """
    if logits.ndim not in (4, 5):
        raise ValueError(f"logits must be (B, C, H, W) or (B, C, H, W, D), got shape {tuple(logits.shape)}")
    if (
        target.ndim != logits.ndim
        or target.shape[1] != 1
        or target.shape[0] != logits.shape[0]
        or (target.shape[2:] != logits.shape[2:])
    ):
        raise ValueError(
            f"target must be (B, 1, *spatial) = {(logits.shape[0], 1, *logits.shape[2:])} to match logits "
            f"{tuple(logits.shape)}, got {tuple(target.shape)}"
        )
    n_classes = logits.shape[1]
    if activation == "softmax" and n_classes < 2:
        raise ValueError("activation='softmax' needs at least 2 logit channels; use 'sigmoid' for one channel")
    if target.is_floating_point() and not torch.equal(target, target.round()):
        raise ValueError("target must hold integer class labels, got non-integer values")
    top = max(n_classes - 1, 1)
    if ignore_index is not None:
        if ignore_index <= top:
            raise ValueError(f"ignore_index={ignore_index} is a class label for {n_classes} logit channel(s); "
                             f"the ignore value must be above {top}")
        target = target[target != ignore_index]
    if target.numel():
        lo, hi = (int(v) for v in torch.aminmax(target))
        if lo < 0 or hi > top:
            raise ValueError(f"target labels must lie in [0, {top}] for {n_classes} logit channel(s), got [{lo}, {hi}]")


def encode_target(target: torch.Tensor, n_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot encode an integer target ``(B, 1, ...)`` to ``(B, C, ...)``.

    With a single channel (binary sigmoid output) the encoding is ``target > 0``: the channel is foreground.
    """
    if n_classes == 1:
        return (target > 0).to(dtype)
    onehot = torch.zeros((target.shape[0], n_classes, *target.shape[2:]), dtype=dtype, device=target.device)
    return onehot.scatter_(1, target.long(), 1.0)


def activate(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """Probabilities from logits ``(B, C, ...)``: softmax over C, or an independent sigmoid per channel."""
    return torch.softmax(logits, dim=1) if activation == "softmax" else torch.sigmoid(logits)


def select_channels(x: torch.Tensor, include_background: bool) -> torch.Tensor:
    """Drop channel 0 (background) of ``(B, C, ...)`` unless kept or there is only one channel."""
    return x if include_background or x.shape[1] == 1 else x[:, 1:]


def tversky_per_class(
    probs: torch.Tensor,
    onehot: torch.Tensor,
    *,
    alpha: float,
    beta: float,
    smooth_nr: float,
    smooth_dr: float,
    batch: bool,
) -> torch.Tensor:
    """Soft Tversky index per class, ``(tp + s_nr) / (tp + alpha fp + beta fn + s_dr)``.

    Salehi, Erdogmus & Gholipour, "Tversky loss function for image segmentation using 3D fully
    convolutional deep networks", MLMI 2017. ``alpha = beta = 0.5`` gives the soft Dice coefficient
    (with smoothing terms halved).

    Args:
        probs: Probabilities ``(B, C, ...)``.
        onehot: Target encoding ``(B, C, ...)``.
        batch: Sum the counts over the batch too ("batch Dice"), giving ``(1, C)`` instead of ``(B, C)``.

    Returns:
        The index per sample (or batch) and class, ``(B, C)`` or ``(1, C)``.
    """
    dims = [0, *range(2, probs.ndim)] if batch else list(range(2, probs.ndim))
    tp = (probs * onehot).sum(dims)
    fp = probs.sum(dims) - tp
    fn = onehot.sum(dims) - tp
    index = (tp + smooth_nr) / (tp + alpha * fp + beta * fn + smooth_dr)
    return index.reshape(1, -1) if batch else index


def focal_per_voxel(
    logits: torch.Tensor,
    onehot: torch.Tensor,
    *,
    activation: str,
    gamma: float,
    alpha: torch.Tensor | float | None,
) -> torch.Tensor:
    """Focal loss per voxel, ``-alpha_t (1 - p_t)^gamma log p_t``, summed over classes, ``(B, 1, ...)``.

    Lin, Goyal, Girshick, He & Dollar, "Focal loss for dense object detection", ICCV 2017. With softmax,
    ``p_t`` is the probability of the true class and ``alpha`` (a per-class vector) weights each voxel by its
    true class; ``gamma = 0`` and no ``alpha`` gives the cross-entropy. With sigmoid every channel is a binary
    problem and ``alpha`` (a scalar or one per channel) weights positives, ``1 - alpha`` negatives, as in Lin.
    """
    if activation == "softmax":
        log_p = torch.log_softmax(logits, dim=1)
        loss = -(1 - log_p.exp()).pow(gamma) * log_p * onehot
        if alpha is not None:
            loss = loss * _channel_view(alpha, loss)
    else:
        log_pt = F.logsigmoid(logits * (2 * onehot - 1))
        loss = -(1 - log_pt.exp()).pow(gamma) * log_pt
        if alpha is not None:
            a = _channel_view(alpha, loss)
            loss = loss * (onehot * a + (1 - onehot) * (1 - a))
    return loss.sum(1, keepdim=True)


def _channel_view(values: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A scalar or per-channel vector shaped ``(1, C, 1, ...)`` to broadcast against ``like``."""
    vec = torch.as_tensor(values, dtype=like.dtype, device=like.device).reshape(-1)
    if vec.numel() not in (1, like.shape[1]):
        raise ValueError(f"{vec.numel()} per-class values given for {like.shape[1]} channels")
    return vec.reshape(1, -1, *([1] * (like.ndim - 2)))


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``(B, C, ...)`` over the spatial axes, over the voxels where ``mask`` ``(B, 1, ...)`` is true:
    ``(B, C)``. A sample without a masked voxel gets 0 (nothing to learn from, not NaN)."""
    b, c = values.shape[:2]
    if mask is None:
        return values.reshape(b, c, -1).mean(-1)
    total = (values * mask).reshape(b, c, -1).sum(-1)
    return total / mask.reshape(b, 1, -1).sum(-1).clamp_min(1).to(total)


def reduce_loss(values: torch.Tensor, reduction: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The one reduction helper: ``'mean'`` and ``'sum'`` over every element, ``'none'`` returns ``values``.

    ``values`` is ``(B, C)`` (or ``(1, C)``) for per-class losses and ``(B, 1, ...)`` for per-voxel losses.
    ``mask`` ``(B, 1, ...)``, for per-voxel losses, keeps the annotated voxels only: ``'mean'`` divides by their
    number (0 when there is none), ``'sum'`` adds them, ``'none'`` gives 0 elsewhere.
    """
    if mask is not None:
        values = values * mask
        if reduction == "mean":
            return values.sum() / mask.sum().clamp_min(1).to(values)
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values
