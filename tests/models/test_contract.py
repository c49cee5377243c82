"""One contract for every registered model: shapes on odd sizes, 2D and 3D, backward, parameter count,
deep-supervision outputs, configuration errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from monai.networks.nets import DynUNet

from medseg.errors import ConfigError
from medseg.models import available_models, build_model, count_parameters

MODELS = ["unet", "resunet", "attention_unet"]
SIZES = {2: (13, 11), 3: (13, 11, 9)}  # odd, not divisible by the total stride


def _config(name, dims, **extra):
    return {"name": name, "spatial_dims": dims, "in_channels": 2, "out_channels": 3, "depth": 3,
            "base_filters": 4, **extra}  # fmt: skip


def _expected_parameters(name, dims, *, c_in=2, classes=3, filters=(4, 8, 16), heads=0, k=3):
    """Parameter count worked out by hand from the architecture (instance norm with affine, no conv bias)."""
    kd = k**dims

    def block(cin, cout):  # conv-norm-act-conv-norm-act
        return kd * cin * cout + 2 * cout + kd * cout * cout + 2 * cout

    encoder = [(c_in, filters[0]), *list(itertools.pairwise(filters))]
    total = sum(block(a, b) for a, b in encoder)
    if name == "resunet":  # 1x1 projection + norm on every encoder block whose width or stride changes
        total += sum(a * b + 2 * b for a, b in encoder)
    for lo, hi in itertools.pairwise(filters):  # up blocks: 2x transposed conv, then a block on the concat
        total += 2**dims * hi * lo + block(2 * lo, lo)
        if name == "attention_unet":  # W_g, W_x (1x1 conv + bias + batch norm), psi (1x1 conv + bias + BN)
            f_int = lo // 2
            total += 2 * (lo * f_int + f_int + 2 * f_int) + (f_int + 1 + 2)
    total += filters[0] * classes + classes  # output 1x1 conv with bias
    total += sum(filters[i] * classes + classes for i in range(1, heads + 1))
    return total


def test_all_models_registered():
    assert set(MODELS) <= set(available_models())


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", MODELS)
class TestModelContract:
    def test_output_shape_on_odd_sizes(self, name, dims):
        torch.manual_seed(0)
        model = build_model(_config(name, dims)).eval()
        for size in (SIZES[dims], tuple(s + 4 for s in SIZES[dims])):
            with torch.no_grad():
                out = model(torch.randn(2, 2, *size))
            assert out.shape == (2, 3, *size)
            assert torch.isfinite(out).all()

    def test_backward_reaches_every_parameter(self, name, dims):
        torch.manual_seed(0)
        model = build_model(_config(name, dims)).train()
        out = model(torch.randn(2, 2, *SIZES[dims]))
        out.square().mean().backward()
        for pname, p in model.named_parameters():
            assert p.grad is not None, pname
            assert torch.isfinite(p.grad).all(), pname
        assert any(p.grad.abs().sum() > 0 for p in model.parameters())

    def test_parameter_count(self, name, dims):
        model = build_model(_config(name, dims))
        assert count_parameters(model) == _expected_parameters(name, dims)
        ds = build_model(_config(name, dims, deep_supervision=True, deep_supervision_heads=1))
        assert count_parameters(ds) == _expected_parameters(name, dims, heads=1)

    def test_deep_supervision_outputs(self, name, dims):
        torch.manual_seed(0)
        config = _config(name, dims, depth=4, deep_supervision=True, deep_supervision_heads=2)
        model = build_model(config).train()
        size = SIZES[dims]
        outs = model(torch.randn(2, 2, *size))
        assert isinstance(outs, list) and len(outs) == 3
        for level, out in enumerate(outs):  # highest resolution first, ceil(size / 2**level)
            assert out.shape == (2, 3, *(math.ceil(s / 2**level) for s in size))
        model.eval()
        with torch.no_grad():
            assert model(torch.randn(1, 2, *size)).shape == (1, 3, *size)

    def test_rebuild_from_config_reproduces_outputs(self, name, dims):
        torch.manual_seed(0)
        config = _config(name, dims)
        a = build_model(config).eval()
        b = build_model(config).eval()
        b.load_state_dict(a.state_dict())
        x = torch.randn(1, 2, *SIZES[dims])
        with torch.no_grad():
            torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize("dims", [2, 3])
def test_plain_unet_matches_monai_dynunet_on_divisible_input(dims):
    """Padding/cropping must not change the network: on divisible sizes it is exactly DynUNet."""
    torch.manual_seed(0)
    ours = build_model(_config("unet", dims)).eval()
    ref = DynUNet(dims, 2, 3, kernel_size=[3] * 3, strides=[1, 2, 2], upsample_kernel_size=[2, 2],
                  filters=[4, 8, 16], norm_name=("INSTANCE", {"affine": True})).eval()  # fmt: skip
    ref.load_state_dict(ours.net.state_dict())
    x = torch.randn(1, 2, *([16] * dims))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"depht": 4}, "unknown key"),
        ({"name": "vnet"}, "unknown model"),
        ({"spatial_dims": 4}, "spatial_dims"),
        ({"depth": 2}, "model.depth"),
        ({"norm": "layer"}, "model.norm"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"strides": [1, 2]}, "model.strides"),
        ({"deep_supervision": True, "deep_supervision_heads": 5}, "deep_supervision_heads"),
        ({"out_channels": 0}, "out_channels"),
    ],
)
def test_bad_config_raises_config_error(change, message):
    with pytest.raises(ConfigError, match=message):
        build_model({**_config("unet", 3), **change})


def test_missing_required_key():
    with pytest.raises(ConfigError, match="in_channels"):
        build_model({"name": "unet", "spatial_dims": 2, "out_channels": 3})
