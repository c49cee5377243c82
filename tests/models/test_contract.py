"""One contract for every registered model: shapes on odd sizes, 2D and 3D, backward, parameter count
(worked out by hand for a tiny configuration), deep-supervision outputs, save/load, configuration errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from monai.networks.nets import DynUNet

from medseg.errors import ConfigError
from medseg.models import available_models, build_model, count_parameters

UNETS = ["unet", "resunet", "attention_unet"]
CLASSIC = ["fcn32s", "fcn16s", "fcn8s", "segnet", "deeplabv3plus"]
RESNET_BASED = ["pspnet", "refinenet", "gcn"]  # issue #32
MODELS = UNETS + CLASSIC + RESNET_BASED
SIZES = {2: (13, 11), 3: (13, 11, 9)}  # odd, not divisible by the total stride


def _config(name, dims, **extra):
    return {"name": name, "spatial_dims": dims, "in_channels": 2, "out_channels": 3, "depth": 3,
            "base_filters": 4, **extra}  # fmt: skip


def _block(cin, cout, kd):  # conv-norm-act-conv-norm-act (MONAI UnetBasicBlock / UnetResBlock without projection)
    return kd * cin * cout + 2 * cout + kd * cout * cout + 2 * cout


def _expected_classic(name, dims, *, c_in, classes, filters, heads, k):
    """FCN, SegNet and DeepLab v3+ parameters for depth 3 (strides 1, 2, 2), counted by hand."""
    kd, c = k**dims, classes
    encoder = sum(_block(a, b, kd) for a, b in itertools.pairwise((c_in, *filters)))
    score = [f * c + c for f in filters]  # 1x1 conv with bias
    if name.startswith("fcn"):  # upsampling: C x C transposed conv, no bias, kernel 2f - f % 2 per axis
        up2, up4, up1 = c * c * 4**dims, c * c * 8**dims, c * c  # factors 2, 4, 1
        return encoder + {"fcn32s": score[2] + up4, "fcn16s": score[2] + score[1] + up2 + up2,
                          "fcn8s": sum(score) + 2 * up2 + up1}[name]  # fmt: skip
    if name == "segnet":  # decoder blocks 16->8, 8->4, final 4->4, output; heads on the level-i decoder block
        decoder = _block(16, 8, kd) + _block(8, 4, kd) + _block(4, 4, kd) + score[0]
        return encoder + decoder + sum(score[i] for i in range(heads))
    # deeplabv3plus: residual encoder (1x1 projection + norm where the width changes), level 2 atrous;
    # ASPP of width 16 = filters[-1] with rates 6, 12, 18; low level 0 reduced to round(16 * 48 / 256) = 3
    f, low = 16, 3
    projections = sum(a * b + 2 * b for a, b in itertools.pairwise((c_in, *filters)))
    aspp = (16 * f + 2 * f) + 3 * (kd * 16 * f + 2 * f) + (16 * f + f) + (5 * f * f + 2 * f)
    decoder = (filters[0] * low + 2 * low) + _block(f + low, f, kd) + (f * c + c)
    return encoder + projections + aspp + decoder + heads * (f * c + c)


def _expected_resnet_based(name, dims, *, c_in, classes, filters, heads, k):
    """PSPNet, RefineNet and GCN parameters for depth 3 (strides 1, 2, 2), counted by hand from the papers'
    modules as built here. Encoder: resunet's (a 1x1 projection + norm on every block, as each changes width)."""
    kd, c = k**dims, classes
    encoder = sum(_block(a, b, kd) + a * b + 2 * b for a, b in itertools.pairwise((c_in, *filters)))
    if name == "pspnet":  # level 2 atrous (same weights); 4 bins of 16 // 4 = 4 channels, 1x1 conv with bias
        f, branch = filters[-1], filters[-1] // 4
        pyramid = 4 * (f * branch + branch)
        bottleneck = (f + 4 * branch) * f * kd + 2 * f  # conv (no bias) + norm
        return encoder + pyramid + bottleneck + (f * c + c) + heads * (filters[-2] * c + c)

    def conv(a, b, kernel=kd, bias=True):
        return a * b * kernel + (b if bias else 0)

    if name == "refinenet":  # RCU: two k-convs with bias; CRP: 2 k-convs without; fusion: a k-conv per path
        rcu = [2 * conv(w, w) for w in filters]
        total = encoder
        for i, w in enumerate(filters):
            total += 2 * rcu[i] + 2 * conv(w, w, bias=False) + rcu[i]  # two RCUs, CRP, output RCU
            if i + 1 < len(filters):  # the coarser path: two RCUs and its fusion conv; this path's fusion conv
                total += 2 * rcu[i + 1] + conv(filters[i + 1], w) + conv(w, w)
        total += 2 * rcu[0] + conv(filters[0], c, 1)  # final RCUs, classifier
        return total + sum(conv(filters[i], c, 1) for i in range(1, heads + 1))
    # gcn: per level dims branches of dims one-axis convs of 7 (bias), first f -> C then C -> C; 5 boundary
    # refinements (two k-convs C -> C with bias); 2 transposed convs C x C of kernel 4 per axis, no bias
    gcns = sum(dims * (conv(f, c, 7) + (dims - 1) * conv(c, c, 7)) for f in filters)
    return encoder + gcns + 5 * 2 * conv(c, c) + 2 * c * c * 4**dims


def _expected_parameters(name, dims, *, c_in=2, classes=3, filters=(4, 8, 16), heads=0, k=3):
    """Parameter count worked out by hand from the architecture (instance norm with affine, no conv bias)."""
    kd = k**dims
    if name in RESNET_BASED:
        return _expected_resnet_based(name, dims, c_in=c_in, classes=classes, filters=filters, heads=heads, k=k)
    if name in CLASSIC:
        return _expected_classic(name, dims, c_in=c_in, classes=classes, filters=filters, heads=heads, k=k)

    def block(cin, cout):
        return _block(cin, cout, kd)

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


# deep-supervision heads asked for at depth 4 (strides 1, 2, 2, 2) and the stride of each auxiliary output
DS_STRIDES = {
    **{name: (2, [2, 4]) for name in UNETS},
    "fcn32s": (1, [8]),  # the deepest score map
    "fcn16s": (2, [4, 8]),  # the fused score maps before each upsampling
    "fcn8s": (3, [2, 4, 8]),
    "segnet": (3, [2, 4, 8]),  # a head on every decoder level
    "deeplabv3plus": (1, [4]),  # the ASPP output, at the output stride (level 3 atrous)
    "pspnet": (1, [2]),  # encoder level 2 (atrous, as level 3): at the output stride 2
    "refinenet": (3, [2, 4, 8]),  # the RefineNet blocks of levels 1..3
    "gcn": (3, [2, 4, 8]),  # the refined score maps of levels 1..3
}


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
        heads, strides = DS_STRIDES[name]
        config = _config(name, dims, depth=4, deep_supervision=True, deep_supervision_heads=heads)
        model = build_model(config).train()
        size = SIZES[dims]
        outs = model(torch.randn(2, 2, *size))
        assert isinstance(outs, list) and len(outs) == 1 + heads
        assert outs[0].shape == (2, 3, *size)
        for out, stride in zip(outs[1:], strides, strict=True):  # highest resolution first, ceil(size / stride)
            assert out.shape == (2, 3, *(math.ceil(s / stride) for s in size))
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


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", MODELS)
def test_save_load_weights_only(name, dims, tmp_path):
    """A state dict saved with torch.save loads with ``weights_only=True`` into a model rebuilt from its config."""
    torch.manual_seed(0)
    config = _config(name, dims)
    model = build_model(config).eval()
    torch.save({"model_config": config, "state_dict": model.state_dict()}, tmp_path / "model.pt")
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    rebuilt = build_model(saved["model_config"]).eval()
    rebuilt.load_state_dict(saved["state_dict"])
    x = torch.randn(1, 2, *SIZES[dims])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", CLASSIC + RESNET_BASED)
def test_tiny_training_reduces_the_loss(name, dims):
    """Fifteen Adam steps on one tiny batch (a bright square/cube is class 1, its centre class 2) lower the
    cross-entropy to less than 70 % of its start, deep supervision included."""
    torch.manual_seed(0)
    size = (16, 16, 8)[:dims]
    target = torch.zeros(2, *size, dtype=torch.long)
    target[(slice(None), *(slice(n // 4, 3 * n // 4) for n in size))] = 1
    target[(slice(None), *(slice(3 * n // 8, 5 * n // 8) for n in size))] = 2
    image = target.float().unsqueeze(1).repeat(1, 2, *([1] * dims)) + 0.3 * torch.randn(2, 2, *size)
    model = build_model(_config(name, dims, deep_supervision=True)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        outputs = model(image)
        terms = [torch.nn.functional.cross_entropy(out, _resize(target, out.shape[2:])) for out in outputs]
        loss = sum(terms) / len(terms)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def _resize(target, size):
    return torch.nn.functional.interpolate(target[:, None].float(), size=tuple(size), mode="nearest")[:, 0].long()


@pytest.mark.parametrize("name", CLASSIC + RESNET_BASED)
@pytest.mark.parametrize(
    ("change", "message"),
    [({"norm": "layer"}, "model.norm"), ({"strides": [1, 2]}, "model.strides"), ({"kernel_size": 2}, "kernel_size"),
     ({"deep_supervision": True, "deep_supervision_heads": 9}, "deep_supervision_heads"), ({"depht": 3}, "unknown")],
)  # fmt: skip
def test_classic_models_name_the_bad_key(name, change, message):
    with pytest.raises(ConfigError, match=message):
        build_model({**_config(name, 2), **change})
