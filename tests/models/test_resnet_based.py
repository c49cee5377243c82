"""PSPNet, RefineNet and GCN (issue #32): each module against a computation written out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medseg.errors import ConfigError
from medseg.models import build_model
from medseg.models.gcn import GlobalConvolution
from medseg.models.refinenet import ChainedResidualPooling


def _config(name, dims=3, **extra):
    return {"name": name, "spatial_dims": dims, "in_channels": 1, "out_channels": 2, "depth": 3, "base_filters": 4,
            **extra}  # fmt: skip


@pytest.mark.parametrize("dims", [2, 3])
def test_global_convolution_is_a_sum_of_separable_large_kernels(dims):
    """Biases zero, one channel: each branch is the outer product of its one-axis kernels, and the module the
    dense convolution with the sum of the branches' kernels (Peng et al. 2017, Figure 2 C)."""
    torch.manual_seed(0)
    kernel = (7, 5, 3)[:dims]
    module = GlobalConvolution(dims, 1, 1, kernel)
    dense = torch.zeros(kernel, dtype=torch.float64)
    for branch in module.branches:
        outer = torch.ones((), dtype=torch.float64)
        for conv in branch:
            torch.nn.init.zeros_(conv.bias)
        for conv in sorted(branch, key=lambda c: int(np.argmax(c.kernel_size))):  # axis order for the product
            outer = torch.tensordot(outer, conv.weight.detach().double().flatten(), dims=0)
        dense += outer
    x = torch.randn(1, 1, *(12, 10, 8)[:dims])
    conv = F.conv2d if dims == 2 else F.conv3d
    expected = conv(x.double(), dense[None, None], padding=[k // 2 for k in kernel])
    with torch.no_grad():
        torch.testing.assert_close(module(x).double(), expected, atol=1e-5, rtol=1e-5)
    assert len(module.branches) == dims and all(len(b) == dims for b in module.branches)


def test_chained_residual_pooling_with_identity_convs_sums_repeated_max_pools():
    """Convolutions set to the identity: CRP(x) = relu(x) + maxpool(relu(x)) + maxpool(maxpool(relu(x)))."""
    torch.manual_seed(0)
    crp = ChainedResidualPooling(3, 2, 3, stages=2, pool=(5, 5, 3))
    for stage in crp.stages:
        weight = torch.zeros_like(stage[1].weight)
        weight[0, 0, 1, 1, 1] = weight[1, 1, 1, 1, 1] = 1.0
        stage[1].weight.data.copy_(weight)
    x = torch.randn(1, 2, 9, 8, 6)
    y = x.clamp_min(0)

    def pool(t):
        return F.max_pool3d(t, (5, 5, 3), stride=1, padding=(2, 2, 1))

    with torch.no_grad():
        torch.testing.assert_close(crp(x), y + pool(y) + pool(pool(y)))
    assert crp.stages[0][0].kernel_size == (5, 5, 3)


def test_pyramid_bins_pool_per_axis_and_bin_one_is_the_global_mean():
    torch.manual_seed(0)
    model = build_model(_config("pspnet", strides=[1, [2, 2, 1], 2], pool_bins=[1, [2, 2, 1], [3, 3, 2]])).eval()
    seen = {}
    model.pyramid.register_forward_hook(lambda m, i, o: seen.update(features=i[0], out=o))
    with torch.no_grad():
        assert model(torch.randn(1, 1, 16, 16, 8)).shape == (1, 2, 16, 16, 8)
        features = seen["features"]
        assert features.shape[2:] == (8, 8, 8)  # level 2 atrous: output stride (2, 2, 1)
        pooled = [stage[0](features).shape[2:] for stage in model.pyramid.stages]
        assert pooled == [(1, 1, 1), (2, 2, 1), (3, 3, 2)]
        first = model.pyramid.stages[0]
        by_hand = F.leaky_relu(first[1](features.mean((2, 3, 4), keepdim=True)), 0.01)
        assert seen["out"].shape[1] == 16 + 3 * 5  # the features, then 3 bins of 16 // 3 = 5 channels
        branch = seen["out"][:, 16:21]  # bin 1, interpolated back from one voxel: constant
        torch.testing.assert_close(branch, by_hand.expand_as(branch), atol=1e-6, rtol=1e-5)
    assert model._total_stride == (2, 2, 1)


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [("pspnet", {"pool_bins": []}, "model.pool_bins must be a non-empty list"),
     ("pspnet", {"pool_bins": [[2, 2]]}, "model.pool_bins entries must be an int or 3 ints"),
     ("pspnet", {"atrous_levels": 2}, "model.atrous_levels must be an integer in 0..1"),
     ("refinenet", {"crp_pool": [5, 4, 3]}, "model.crp_pool must be odd"),
     ("refinenet", {"crp_stages": 0}, "model.crp_stages must be an integer >= 1"),
     ("gcn", {"gcn_kernel": [7, 7]}, "model.gcn_kernel entries must be an int or 3 ints"),
     ("gcn", {"gcn_kernel": 6}, "model.gcn_kernel must be odd"),
     ("gcn", {"depth": 1}, "model.depth must be an integer >= 2 for gcn")],
)  # fmt: skip
def test_own_options_name_the_bad_key(name, change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        build_model(_config(name, **change))
