"""The training loss is built once from the typed loss section; distance losses get the plan's spacing."""

from __future__ import annotations

import pytest
import torch

from medseg.losses import CompoundLoss, DeepSupervisionLoss, HausdorffDTLoss, build_loss
from medseg.models import build_model
from medseg.training.loader import load_pipeline
from medseg.training.objective import build_objective, loss_spec, use_plan_spacing

SMALL = ["model.depth=3", "model.base_filters=8", "model.strides=null"]


def _config(*overrides):
    return load_pipeline("liver", device="cpu", overrides=[*SMALL, *overrides])


def test_shorthands_bind_to_one_loss_section():
    named = _config("loss=dice_ce").loss
    assert (named.name, named.params, named.terms) == ("dice_ce", {}, ())
    listed = _config("loss=[{name: dice}, {name: boundary, weight: 0.01, ramp: {per_epoch: 0.01, max: 1.0}}]").loss
    assert listed.name == "compound" and [t.name for t in listed.terms] == ["dice", "boundary"]
    assert listed.terms[1].weight == 0.01 and listed.terms[1].ramp.max == 1.0
    single = _config("loss={name: boundary, weight: 0.5}").loss
    assert single.name == "compound" and single.terms[0].weight == 0.5


def test_distance_loss_gets_the_plan_spacing_and_matches_a_direct_build():
    config = _config("loss=[{name: dice}, {name: hausdorff, weight: 0.1}]", "model.deep_supervision=false")
    loss = build_objective(config, build_model(config.model_config()))
    assert isinstance(loss, CompoundLoss)
    assert use_plan_spacing(loss, (0.8, 0.8, 2.5), spatial_dims=3) == ["losses.1"]
    hausdorff = loss.terms[1].loss
    assert hausdorff.spacing_mm == (0.8, 0.8, 2.5)
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 12, 12, 6), torch.randint(0, 3, (2, 1, 12, 12, 6))
    direct = HausdorffDTLoss(spacing_mm=(0.8, 0.8, 2.5))(logits, target)
    torch.testing.assert_close(hausdorff(logits, target), direct)
    assert not torch.allclose(direct, HausdorffDTLoss(spacing_mm=(1.0, 1.0, 1.0))(logits, target))


def test_2d_models_get_the_in_plane_spacing():
    loss = build_loss(loss_spec(_config("loss=hausdorff").loss, spatial_dims=2))
    use_plan_spacing(loss, (0.7, 0.9, 5.0), spatial_dims=2)
    assert loss.spacing_mm == (0.7, 0.9)


def test_deep_supervision_wraps_the_loss_once():
    config = _config("model.deep_supervision=true", "training.deep_supervision_weights=equal")
    model = build_model(config.model_config())
    loss = build_objective(config, model)
    heads = len(model._head_strides)
    assert isinstance(loss, DeepSupervisionLoss) and heads >= 1
    assert torch.allclose(torch.as_tensor(loss.weights), torch.full((heads + 1,), 1.0 / (heads + 1)))


def test_bad_loss_parameter_fails_when_built():
    from medseg.errors import ConfigError

    config = _config("loss={name: focal, params: {gamma: -1}}")  # a value only the loss itself checks
    with pytest.raises(ConfigError, match=r"loss 'focal': gamma=-1 must be >= 0"):
        build_objective(config, build_model(config.model_config()))  # train() does this before any data
