"""An nnU-Net network on medseg's grid (fine-tuning): nnU-Net's own network (``get_network_from_plans``, deep
supervision on) on the permuted input gives the wrapper's outputs; a folder trained by nnunetv2 starts a
medseg fine-tuning run with its weights, and the run's checkpoint predicts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medseg.interop.nnunet import NnUNetTrainable, build_trainable_network, medseg_axes

from .conftest import seeded_plans

get_network_from_plans = pytest.importorskip("nnunetv2.utilities.get_network_from_plans").get_network_from_plans


def test_medseg_axes_follow_nnunets_reader():
    # nnU-Net reads (k, j, i) and applies transpose_forward; medseg's canonical array is (i, j, k)
    assert medseg_axes([0, 1, 2]) == (2, 1, 0)
    assert medseg_axes([1, 0, 2]) == (1, 2, 0)


def test_outputs_equal_nnunets_network_on_its_axes():
    plans = seeded_plans()
    architecture = plans["configurations"]["3d_fullres"]["architecture"]
    axes = list(medseg_axes(plans["transpose_forward"]))
    ours = build_trainable_network({"architecture": architecture, "axes": axes, "in_channels": 1, "out_channels": 3})
    theirs = get_network_from_plans(architecture["network_class_name"], architecture["arch_kwargs"],
                                    architecture["_kw_requires_import"], 1, 3, deep_supervision=True)  # fmt: skip
    ours.net.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 1, 16, 8, 12, generator=torch.Generator().manual_seed(0))  # medseg (X, Y, Z)
    to_nnunet, back = (0, 1, *(2 + a for a in axes)), (0, 1, *(2 + axes.index(d) for d in range(3)))
    with torch.no_grad():
        expected = [o.permute(back) for o in theirs.train()(x.permute(to_nnunet))]
        supervised = ours.train()(x)
        plain = ours.eval()(x)
    assert len(supervised) == len(expected) == 2 and ours._head_strides == [[2, 2, 2]]
    for a, b in zip(supervised, expected):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(plain, expected[0])


def test_odd_sizes_are_padded_and_cropped():
    architecture = seeded_plans()["configurations"]["3d_fullres"]["architecture"]
    model = build_trainable_network({"architecture": architecture, "axes": [1, 2, 0], "in_channels": 1,
                                     "out_channels": 2}).train()  # fmt: skip
    assert isinstance(model, NnUNetTrainable)
    outputs = model(torch.zeros(1, 1, 13, 9, 7))
    assert [tuple(o.shape) for o in outputs] == [(1, 2, 13, 9, 7), (1, 2, 7, 5, 4)]


@pytest.mark.slow
def test_finetune_from_a_folder_trained_by_nnunetv2(nnunet_folder, tiny_dataset, tmp_path):
    from medseg.data import make_phantom
    from medseg.inference import Predictor
    from medseg.interop.nnunet import load_nnunet_checkpoint
    from medseg.training.finetune import build_network
    from medseg.training.loader import load_pipeline
    from medseg.training.loop import train

    overrides = ["data.folds=2", "training.iterations_per_epoch=2", "training.workers=0", "training.epochs=1",
                 "training.patch_size=[32,32,16]", "validation.max_cases=1", "training.deterministic=true",
                 f"data.cache_dir={tmp_path / 'cache'}", f"training.init_from={nnunet_folder}",
                 "preprocessing.target_spacing_mm=[8,8,10]"]  # fmt: skip
    config = load_pipeline("liver", device="cpu", overrides=overrides)
    weights = load_nnunet_checkpoint(nnunet_folder / "fold_0" / "checkpoint_final.pth")["network_weights"]
    model, model_config, record, _ = build_network(config)
    for key, value in weights.items():
        torch.testing.assert_close(model.state_dict()[f"net.{key}"], value, rtol=0, atol=0, msg=key)
    dataset = json.loads((nnunet_folder / "dataset.json").read_text())
    assert record["pretrained_labels"] == {str(v): k for k, v in dataset["labels"].items()} == config.data.labels
    assert record["reinitialised"] == [] and record["checkpoint"].endswith("fold_0/checkpoint_final.pth")
    assert model_config["architecture"]["network_class_name"].endswith("PlainConvUNet")

    train(config, run_dir=tmp_path / "run", data=tiny_dataset, progress=False)
    predictor = Predictor.from_run(tmp_path / "run", device="cpu")
    case = make_phantom(size="tiny", seed=0, index=1)
    labels = predictor(case.image)
    assert labels.shape == case.image.shape and set(np.unique(labels.array)) <= {0, 1, 2}
