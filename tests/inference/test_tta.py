"""Mirroring TTA: averages over flips, exactly invariant for a mirror-equivariant network."""

from __future__ import annotations

import pytest
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


class _Symmetric(torch.nn.Module):
    """Two convolutions whose kernels are mirror-symmetric along every axis, zero padding, ReLU between:
    exactly flip-equivariant, with a 5-voxel receptive field, so window edges and the scan's edge matter."""

    def __init__(self, spatial_dims: int, in_channels: int = 1):
        super().__init__()
        conv = torch.nn.Conv3d if spatial_dims == 3 else torch.nn.Conv2d
        torch.manual_seed(0)
        self.a, self.b = conv(in_channels, 4, 3, padding=1), conv(4, 3, 3, padding=1)
        dims = range(2, 2 + spatial_dims)
        with torch.no_grad():
            for layer in (self.a, self.b):
                w = layer.weight
                combos = [(), *mirror_axes_combinations(tuple(dims))]
                layer.weight.copy_(sum(w.flip(c) if c else w for c in combos) / len(combos))

    def forward(self, x):
        return self.b(torch.relu(self.a(x))) * 4.0


def _small_objects(shape, spots):
    image = torch.full((1, *shape), -1.0)
    for x, y, z in spots:
        image[0, x : x + 2, y : y + 2, z : z + 1] = 1.0  # 4-voxel objects
    return image


@pytest.mark.parametrize("shape,box", [
    ((40, 37, 13), None),  # windows overlap unevenly; the last ones are shifted back to the scan's edge
    ((40, 37, 5), None),  # thinner than a window along z: padded 1 before, 2 after (asymmetric)
    ((40, 37, 13), (slice(3, 30), slice(5, 20), slice(2, 11))),  # fine pass tiled over a box
])
def test_tta_of_an_equivariant_network_changes_nothing_near_window_edges(shape, box):
    from medseg.inference.sliding_window import WindowSettings, predict_logits

    net = _Symmetric(3).eval()
    # objects on window borders (x 15/16 and 23/24 for windows at 0, 8, ...), on the scan's and the box's edges
    spots = [(15, 7, 0), (23, 0, 3), (0, 35, 4), (38, 16, 2), (7, 23, 1), (30, 30, 3), (3, 5, 2), (28, 18, 4)]
    image = _small_objects(shape, spots)
    settings = WindowSettings((16, 16, 8), 3, overlap=0.5, batch_size=3, box_windows="tile")
    plain = predict_logits(net, image, settings, box=box)
    for axes in [(0, 1, 2), (1, 2), (2,)]:
        tta = predict_logits(mirrored(net, spatial_dims=3, axes=axes), image, settings, box=box)
        torch.testing.assert_close(torch.softmax(tta, 0), torch.softmax(plain, 0), atol=1e-5, rtol=1e-5)
    empty = predict_logits(net, torch.full_like(image, -1.0), settings, box=box)
    assert (plain - empty).abs().amax() > 0.1  # the objects change the output: a misaligned flip would show


def test_tta_of_an_equivariant_2d_network_with_context_slices():
    from medseg.inference.sliding_window import WindowSettings, predict_logits

    net = _Symmetric(2, in_channels=3).eval()
    image = _small_objects((20, 19, 6), [(0, 9, 0), (15, 17, 5), (7, 7, 2)])
    settings = WindowSettings((16, 16), 3, context_slices=1, batch_size=4)
    plain = predict_logits(net, image, settings)
    tta = predict_logits(mirrored(net, spatial_dims=2, axes=(0, 1)), image, settings)
    torch.testing.assert_close(torch.softmax(tta, 0), torch.softmax(plain, 0), atol=1e-5, rtol=1e-5)
