"""Networks built from plans equal nnU-Net's own ``get_network_from_plans`` (same modules, same outputs)."""

from __future__ import annotations

import copy

import pytest
import torch

from medseg.interop.nnunet import build_nnunet_network

from .conftest import seeded_plans

get_network_from_plans = pytest.importorskip("nnunetv2.utilities.get_network_from_plans").get_network_from_plans


def _resenc() -> dict:
    """The ResEnc preset's architecture section (nnU-Net's ``nnUNetResEncUNetMPlans`` layout), made small."""
    architecture = copy.deepcopy(seeded_plans()["configurations"]["3d_fullres"]["architecture"])
    architecture["network_class_name"] = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
    kwargs = architecture["arch_kwargs"]
    kwargs["n_blocks_per_stage"] = [1, 2, 2]
    del kwargs["n_conv_per_stage"]
    return architecture


@pytest.mark.parametrize("architecture", [seeded_plans()["configurations"]["3d_fullres"]["architecture"], _resenc()],
                         ids=["PlainConvUNet", "ResidualEncoderUNet"])
def test_network_equals_nnunets(architecture):
    ours = build_nnunet_network(architecture, in_channels=1, num_classes=3).eval()
    theirs = get_network_from_plans(architecture["network_class_name"], architecture["arch_kwargs"],
                                    architecture["_kw_requires_import"], 1, 3, deep_supervision=False).eval()
    assert type(ours) is type(theirs)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 1, 32, 16, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))
