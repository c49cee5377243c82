"""FCN: the learned upsampling starts as bilinear/trilinear interpolation (Long et al. 2015, section 3.3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medseg.models import build_model
from medseg.models.fcn import bilinear_kernel, bilinear_upsampling

MODE = {2: "bilinear", 3: "trilinear"}


def _interior(x: torch.Tensor, margin: int) -> torch.Tensor:
    return x[(..., *(slice(margin, n - margin) for n in x.shape[2:]))]


@pytest.mark.parametrize(("dims", "factors"), [(2, (2, 2)), (2, (4, 3)), (3, (2, 2, 1)), (3, (8, 8, 4))])
def test_upsampling_layer_is_interpolation_on_the_interior(dims, factors):
    torch.manual_seed(0)
    layer = bilinear_upsampling(dims, 3, factors)
    x = torch.randn(2, 3, *([6] * dims))
    ours = layer(x)
    ref = F.interpolate(x, scale_factor=factors, mode=MODE[dims], align_corners=False)
    assert ours.shape == ref.shape == (2, 3, *(6 * f for f in factors))
    # the transposed convolution sees zeros beyond the border, interpolate repeats the edge: compare inside
    margin = max(factors)
    torch.testing.assert_close(_interior(ours, margin), _interior(ref, margin), atol=1e-5, rtol=1e-5)


def test_bilinear_kernel_values():
    """Factor 2: the 4-tap filter [1/4, 3/4, 3/4, 1/4]; factor 3: [1/3, 2/3, 1, 2/3, 1/3] (FCN's upsample_filt)."""
    np.testing.assert_allclose(bilinear_kernel([2]), [0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(bilinear_kernel([3]), [1 / 3, 2 / 3, 1, 2 / 3, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(bilinear_kernel([2, 3]), np.outer(bilinear_kernel([2]), bilinear_kernel([3])))


@pytest.mark.parametrize("dims", [2, 3])
def test_fcn8s_starts_as_interpolated_deepest_scores(dims):
    """At initialisation the skip scores are zero and every upsampling is bilinear, so FCN-8s' output is the
    deepest score map interpolated x2 (fusion), x2 (fusion), x2 (final) -- checked away from the borders."""
    torch.manual_seed(0)
    model = build_model({"name": "fcn8s", "spatial_dims": dims, "in_channels": 2, "out_channels": 3, "depth": 4,
                         "base_filters": 4}).eval()  # fmt: skip
    x = torch.randn(1, 2, *([48] * dims))
    with torch.no_grad():
        out = model(x)
        h = x
        for pool, block in zip(model.pools, model.blocks):
            h = block(pool(h))
        ref = model.scores[0](h)  # deepest level, stride 8
        for _ in range(3):
            ref = F.interpolate(ref, scale_factor=2, mode=MODE[dims], align_corners=False)
    assert out.shape == ref.shape == (1, 3, *([48] * dims))
    torch.testing.assert_close(_interior(out, 16), _interior(ref, 16), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(out, ref, atol=1e-5)  # the borders do differ: the check above is not vacuous
