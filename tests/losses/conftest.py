"""Fixtures for the loss tests: random logits/targets and "perfect" logits, made here."""

from __future__ import annotations

import pytest
import torch


def _make_case(shape: tuple[int, ...], classes: int, seed: int, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn((shape[0], classes, *shape[1:]), generator=gen, dtype=dtype)
    target = torch.randint(0, classes, (shape[0], 1, *shape[1:]), generator=gen)
    return logits, target


@pytest.fixture
def make_case():
    """``make_case(shape=(B, H, W[, D]), classes, seed)`` -> (logits (B, C, ...), target (B, 1, ...))."""
    return _make_case


@pytest.fixture
def blob_target():
    """``blob_target(spatial, classes)``: a (1, 1, ...) target with a box per foreground class."""

    def make(spatial: tuple[int, ...], classes: int = 3) -> torch.Tensor:
        target = torch.zeros((2, 1, *spatial), dtype=torch.long)
        for c in range(1, classes):
            lo = [2 + 3 * (c - 1) for _ in spatial]
            box = tuple(slice(a, a + 3) for a in lo)
            target[(0, 0, *box)] = c
            target[(1, 0, *tuple(slice(a + 1, a + 4) for a in lo))] = c
        return target

    return make


def perfect_logits(target: torch.Tensor, classes: int, margin: float = 30.0) -> torch.Tensor:
    """Logits whose softmax/sigmoid is (numerically) the one-hot target."""
    onehot = torch.nn.functional.one_hot(target[:, 0], classes).movedim(-1, 1).double()
    return margin * (2 * onehot - 1)


@pytest.fixture
def perfect():
    return perfect_logits
