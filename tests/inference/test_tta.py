"""Mirroring TTA: averages over flips, exactly invariant for a mirror-equivariant network."""

from __future__ import annotations

import torch

from medseg.inference.tta import mirror_axes_combinations, mirrored


def test_combinations():
    assert mirror_axes_combinations((2, 3)) == [(2,), (3,), (2, 3)]
    assert len(mirror_axes_combinations((2, 3, 4))) == 7


def test_mirrored_average_matches_manual_flips():
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(1, 2, 3, padding=1).eval()
    x = torch.randn(2, 1, 6, 5, 4)
    with torch.no_grad():
        manual = sum(torch.flip(conv(torch.flip(x, d)), d) if d else conv(x)
                     for d in [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]) / 8
        out = mirrored(conv, spatial_dims=3)(x)
    torch.testing.assert_close(out, manual)
    # a mirror-symmetric kernel makes the network flip-equivariant: TTA changes nothing
    with torch.no_grad():
        w = conv.weight
        conv.weight.copy_((w + w.flip(2) + w.flip(3) + w.flip(4) + w.flip(2, 3) + w.flip(2, 4) + w.flip(3, 4)
                           + w.flip(2, 3, 4)) / 8)
        torch.testing.assert_close(mirrored(conv, spatial_dims=3)(x), conv(x), atol=1e-6, rtol=1e-5)


def test_mirrored_2d_selected_axes():
    net = torch.nn.Conv2d(1, 1, (1, 3), padding=(0, 1), bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[[[1.0, 0.0, 0.0]]]]))  # output[w] = input[w - 1]: a shift
        x = torch.arange(4.0).reshape(1, 1, 1, 4)
        out = mirrored(net, spatial_dims=2, axes=(1,))(x)
    # shift right: [0, 0, 1, 2]; flipped shift (= shift left): [1, 2, 3, 0]; mean:
    torch.testing.assert_close(out, torch.tensor([[[[0.5, 1.0, 2.0, 1.0]]]]))
