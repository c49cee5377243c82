"""DeepLab v3+: per-axis atrous rates, output stride, ASPP with image pooling (Chen et al. 2018)."""

from __future__ import annotations

import pytest
import torch

from medseg.errors import ConfigError
from medseg.models import build_model
from medseg.models.deeplab import DilatedResBlock


def _config(**extra):
    return {"name": "deeplabv3plus", "spatial_dims": 3, "in_channels": 1, "out_channels": 2, "depth": 4,
            "base_filters": 4, **extra}  # fmt: skip


def test_atrous_levels_dilate_by_the_stride_they_replace_per_axis():
    model = build_model(_config(strides=[1, [2, 2, 1], 2, [2, 2, 1]], atrous_levels=2, aspp_rates=[[3, 3, 1], 2]))
    atrous = [b for b in model.encoder if isinstance(b, DilatedResBlock)]
    assert [b.conv1.dilation for b in atrous] == [(2, 2, 2), (4, 4, 2)]  # levels 2 and 3: cumulative replaced
    assert model._total_stride == (2, 2, 1)  # output stride: level 1 only
    rates = [branch[0].dilation for branch in model.aspp.branches[1:]]
    assert rates == [(3, 3, 1), (2, 2, 2)]
    assert [branch[0].padding for branch in model.aspp.branches[1:]] == [(3, 3, 1), (2, 2, 2)]  # 'same' size


def test_features_stay_at_the_output_stride_and_image_pooling_sees_the_whole_input():
    torch.manual_seed(0)
    model = build_model(_config(strides=[1, 2, 2, 2], atrous_levels=1)).eval()
    seen = {}
    model.aspp.register_forward_hook(lambda m, i, o: seen.update(aspp_in=i[0]))
    x = torch.randn(1, 1, 16, 16, 8)
    with torch.no_grad():
        base = model(x)
        assert seen["aspp_in"].shape[2:] == (4, 4, 2)  # output stride 4, not the backbone's 8
        pooled = model.aspp.image_pooling(seen["aspp_in"])
        torch.testing.assert_close(
            pooled, model.aspp.image_pooling[2](model.aspp.image_pooling[1](seen["aspp_in"].mean((2, 3, 4), True)))
        )
    assert base.shape == (1, 2, 16, 16, 8)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"atrous_levels": 3}, "atrous_levels"), ({"low_level": 2}, "low_level"), ({"aspp_rates": []}, "aspp_rates"),
     ({"aspp_rates": [[2, 2]]}, "aspp_rates"), ({"deep_supervision": True, "deep_supervision_heads": 2}, "heads")],
)  # fmt: skip
def test_bad_deeplab_config_raises_config_error(change, message):
    with pytest.raises(ConfigError, match=message):
        build_model(_config(**change))
