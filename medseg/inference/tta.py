"""Mirroring test-time augmentation: average the logits of a network over flipped copies of its input.

Each of the ``2^d - 1`` non-empty combinations of the mirrored spatial axes is applied to the input, the
network's output is flipped back, and all ``2^d`` logit maps are averaged, as in nnU-Net (Isensee et al.
2021, *Nature Methods* 18:203). MONAI offers no plain function for this (its ``TestTimeAugmentation``
runs random invertible transforms over a data-loader pipeline), so this is a ~20-line wrapper.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch

__all__ = ["mirror_axes_combinations", "mirrored"]


def mirror_axes_combinations(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every non-empty subset of ``axes`` (as tensor dims), smallest first."""
    axes = tuple(axes)
    return [combo for r in range(1, len(axes) + 1) for combo in itertools.combinations(axes, r)]


def mirrored(
    network: Callable[[torch.Tensor], torch.Tensor], *, spatial_dims: int, axes: Sequence[int] | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap ``network`` so it returns logits averaged over mirrored inputs.

    Args:
        network: Maps ``(B, C, *spatial)`` to logits ``(B, K, *spatial)``; list outputs use item 0.
        spatial_dims: 2 or 3, the number of spatial axes of the network's input.
        axes: Spatial axes to mirror (0-based among the spatial axes); all of them by default.

    Returns:
        A function with the same signature, ``2^len(axes)`` times as expensive.
    """
    axes = tuple(range(spatial_dims)) if axes is None else tuple(axes)
    if any(not 0 <= a < spatial_dims for a in axes):
        raise ValueError(f"axes must be in 0..{spatial_dims - 1}, got {axes}")
    combos = mirror_axes_combinations(tuple(a + 2 for a in axes))

    def _first(out):
        return out[0] if isinstance(out, list | tuple) else out

    def run(x: torch.Tensor) -> torch.Tensor:
        total = _first(network(x)).float()
        for dims in combos:
            total = total + torch.flip(_first(network(torch.flip(x, dims))).float(), dims)
        return total / (len(combos) + 1)

    return run
