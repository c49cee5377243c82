"""SegNet: the decoder unpools with the encoder's max-pooling indices (Badrinarayanan et al. 2015)."""

from __future__ import annotations

import pytest
import torch

from medseg.errors import ConfigError
from medseg.models import build_model


@pytest.mark.parametrize("dims", [2, 3])
def test_unpooling_returns_values_to_the_encoder_maxima(dims):
    torch.manual_seed(0)
    model = build_model({"name": "segnet", "spatial_dims": dims, "in_channels": 1, "out_channels": 2, "depth": 3,
                         "base_filters": 4}).eval()  # fmt: skip
    seen = {}
    model.pools[0].register_forward_hook(lambda m, i, o: seen.update(pooled=o[1], pre_pool=i[0]))
    model.unpools[0].register_forward_hook(lambda m, i, o: seen.update(unpooled=o, decoded=i[0]))
    with torch.no_grad():
        model(torch.randn(1, 1, *([8] * dims)))
    unpooled, decoded, indices = seen["unpooled"], seen["decoded"], seen["pooled"]
    assert unpooled.shape == seen["pre_pool"].shape
    flat = unpooled.flatten(2)
    # every decoded value sits at the position its pooling window's maximum came from, the rest is zero
    torch.testing.assert_close(flat.gather(2, indices.flatten(2)), decoded.flatten(2))
    mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(2, indices.flatten(2), True)
    assert (flat[~mask] == 0).all()
    assert int(mask.sum()) == decoded.numel()


def test_segnet_rejects_a_strided_input_level():
    with pytest.raises(ConfigError, match=r"model.strides\[0\]"):
        build_model({"name": "segnet", "spatial_dims": 2, "in_channels": 1, "out_channels": 2, "depth": 3,
                     "strides": [2, 2, 2]})  # fmt: skip
