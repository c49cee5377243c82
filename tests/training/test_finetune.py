"""Fine-tuning (``training.init_from``): a medseg run's and an nnU-Net folder's weights are where training
starts, output layers re-initialised (and recorded) where the classes differ, the frozen-encoder warm-up,
resume, predict on the fine-tuned run, and one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medseg.cli import main
from medseg.errors import ConfigError, DataError
from medseg.io import read_volume
from medseg.runs.checkpoint import load_checkpoint
from medseg.training.finetune import build_network, encoder_modules
from medseg.training.loader import load_pipeline
from medseg.training.loop import train
from medseg.training.run_files import load_run_config

TINY = ["data.folds=2", "training.iterations_per_epoch=3", "training.batch_size=2", "training.workers=0",
        "model.depth=3", "model.base_filters=8", "model.strides=null", "validation.max_cases=1",
        "validation.every_n_epochs=1", "training.deterministic=true", "training.patch_size=[32,32,16]"]  # fmt: skip
#: The seeded nnU-Net plan's spacing is 4 x 4 x 13 mm (file order); the tiny phantom's ~8 x 8 x 10 mm.
NNUNET_SPACING = ["preprocessing.target_spacing_mm=[8,8,10]"]


def _config(cache, *extra):
    return load_pipeline("liver", device="cpu", overrides=[*TINY, f"data.cache_dir={cache}", *extra])


@pytest.fixture(scope="module")
def source_run(tiny_dataset, tmp_path_factory):
    """A medseg run trained for one short epoch (the model to start from) and its cache."""
    root = tmp_path_factory.mktemp("source")
    config = _config(root / "cache", "training.epochs=1")
    train(config, run_dir=root / "run", data=tiny_dataset, progress=False)
    return root / "run", root / "cache"


@pytest.fixture(scope="module")
def nnunet_model(tmp_path_factory):
    """An nnU-Net v2 folder (plans.json, dataset.json, fold_0/checkpoint_final.pth in nnU-Net's layout)."""
    from ..interop.nnunet.conftest import write_seeded_folder

    return write_seeded_folder(tmp_path_factory.mktemp("nnunet_seeded"), seed=3)


def _nnunet_weights(folder):
    from medseg.interop.nnunet import load_nnunet_checkpoint

    return load_nnunet_checkpoint(folder / "fold_0" / "checkpoint_final.pth")["network_weights"]


def test_medseg_run_weights_are_the_start(source_run, tmp_path):
    run, cache = source_run
    model, model_config, record, plan = build_network(_config(cache, f"training.init_from={run}",
                                                              "model.base_filters=16"))  # ignored: the run's model
    source = load_checkpoint(run / "best.pt")
    assert model_config == source["model_config"] and model_config["base_filters"] == 8
    for key, value in source["model"].items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0, msg=key)
    assert record["reinitialised"] == [] and record["reason"] is None and record["format"] == "medseg"
    assert plan.to_dict() == source["plan"]


def test_cli_init_from_trains_and_records_the_source(source_run, tiny_dataset, tmp_path):
    run, cache = source_run
    sets = [a for o in [*TINY, f"data.cache_dir={cache}", "training.iterations_per_epoch=1"] for a in ("--set", o)]
    assert main(["train", "liver", "--data", str(tiny_dataset), "--out", str(tmp_path / "ft"), "--device", "cpu",
                 "--epochs", "1", "--no-progress", "--init-from", str(run), *sets]) == 0  # fmt: skip
    record = json.loads((tmp_path / "ft" / "init.json").read_text())
    assert record["path"] == str(run.resolve()) and record["checkpoint"] == str(run.resolve() / "best.pt")
    assert load_checkpoint(tmp_path / "ft" / "last.pt")["config"]["training"]["init_from"] == str(run.resolve())


def test_medseg_run_other_classes_reinitialise_the_output_layers(source_run):
    run, cache = source_run
    config = _config(cache, f"training.init_from={run}", "data.num_classes=2",
                     "data.labels={'0': background, '1': liver}", "validation.metric=liver_dice",
                     "loss.params.class_weights=null")  # fmt: skip
    model, model_config, record, _ = build_network(config)
    source = load_checkpoint(run / "best.pt")["model"]
    changed = sorted(k for k in source if source[k].shape != model.state_dict()[k].shape)
    # DynUNet: the output block and the one deep-supervision head (also keyed as skip_layers...super_head)
    assert record["reinitialised"] == changed and len(changed) == 6 and model_config["out_channels"] == 2
    assert record["reason"] == "the pretrained model has 3 classes, data.labels 2"
    for key in set(source) - set(changed):
        torch.testing.assert_close(model.state_dict()[key], source[key], rtol=0, atol=0, msg=key)
    # background and liver are named in both: their output channels are copied, tumor's is dropped
    assert record["kept_classes"] == {"background": [0, 0], "liver": [1, 1]}
    for key in changed:
        torch.testing.assert_close(model.state_dict()[key], source[key][:2], rtol=0, atol=0, msg=key)


def test_nnunet_folder_weights_plan_and_renamed_class(nnunet_model, tmp_path):
    weights = _nnunet_weights(nnunet_model)
    config = _config(tmp_path / "cache", f"training.init_from={nnunet_model}")
    model, model_config, record, plan = build_network(config)
    assert model_config["name"] == "nnunet" and model_config["axes"] == [1, 2, 0]  # transpose_forward [1, 0, 2]
    for key, value in weights.items():
        torch.testing.assert_close(model.state_dict()[f"net.{key}"], value, rtol=0, atol=0, msg=key)
    assert record["reinitialised"] == [] and record["format"] == "nnU-Net v2" and record["fold"] == 0
    # plans.json: spacing [4, 13, 4] after transpose [1, 0, 2] -> file order (4, 4, 13); CTNormalization values
    assert plan.target_spacing_mm == (4.0, 4.0, 13.0) and plan.normalization == "ct_zscore"
    assert (plan.clip_hu, plan.mean, plan.std) == ((-89.0, 88.0), 51.1, 23.6)

    renamed = _config(tmp_path / "cache", f"training.init_from={nnunet_model}",
                      "data.labels={'0': background, '1': liver, '2': lesion}")  # fmt: skip
    model, _, record, _ = build_network(renamed)
    assert record["reinitialised"] == [f"net.decoder.seg_layers.{i}.{p}" for i in (0, 1) for p in ("bias", "weight")]
    assert "class 2 is 'tumor' in the pretrained model, 'lesion'" in record["reason"]
    assert record["kept_classes"] == {"background": [0, 0], "liver": [1, 1]}
    for i in (0, 1):
        for p in ("weight", "bias"):
            fresh, old = model.state_dict()[f"net.decoder.seg_layers.{i}.{p}"], weights[f"decoder.seg_layers.{i}.{p}"]
            assert torch.equal(fresh[:2], old[:2]) and not torch.equal(fresh[2], old[2])


def test_nnunet_wrapper_equals_the_network_on_nnunets_axes(nnunet_model):
    """The fine-tuned network in eval mode is nnU-Net's network on the permuted input (and deep supervision
    gives its lower-resolution output too)."""
    from medseg.interop.nnunet import build_nnunet_network

    config = _config("unused", f"training.init_from={nnunet_model}")
    model, _, _, _ = build_network(config)
    plans = json.loads((nnunet_model / "plans.json").read_text())
    plain = build_nnunet_network(plans["configurations"]["3d_fullres"]["architecture"], in_channels=1, num_classes=3)
    plain.load_state_dict(_nnunet_weights(nnunet_model))
    x = torch.randn(1, 1, 16, 12, 8)  # medseg's X, Y, Z
    with torch.no_grad():
        expected = plain.eval()(x.permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)  # axes [1, 2, 0] and back
        torch.testing.assert_close(model.eval()(x), expected)
        outputs = model.train()(x)
    assert [tuple(o.shape) for o in outputs] == [(1, 3, 16, 12, 8), (1, 3, 8, 6, 4)]


def test_nnunet_finetune_loss_falls_and_predict_loads_it(nnunet_model, tiny_dataset, tmp_path):
    from medseg.data import make_phantom
    from medseg.inference import Predictor

    config = _config(tmp_path / "cache", f"training.init_from={nnunet_model}", *NNUNET_SPACING, "training.epochs=8",
                     "validation.every_n_epochs=8", "optimizer.lr=0.01")  # fmt: skip
    train(config, run_dir=tmp_path / "run", data=tiny_dataset, progress=False)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    losses = [row["train_loss"] for row in state["history"]]
    assert losses[-1] < 0.8 * losses[0], losses
    assert state["init"]["checkpoint"].endswith("fold_0/checkpoint_final.pth")
    assert json.loads((tmp_path / "run" / "init.json").read_text()) == state["init"]
    assert state["plan"]["target_spacing_mm"] == [8.0, 8.0, 10.0] and state["plan"]["mean"] == 51.1

    predictor = Predictor.from_run(tmp_path / "run", device="cpu")
    for key, value in state["model"].items():
        torch.testing.assert_close(predictor.network.state_dict()[key], value, rtol=0, atol=0, msg=key)
    case = make_phantom(size="tiny", seed=0, index=1)
    labels = predictor(case.image)
    assert labels.shape == case.image.shape and set(np.unique(labels.array)) <= {0, 1, 2}

    scan = tiny_dataset / "volume-1.nii.gz"  # `medseg predict` on the run gives the predictor's labels
    assert main(["predict", "--model", str(tmp_path / "run"), str(scan), "--out", str(tmp_path / "pred"),
                 "--device", "cpu"]) == 0  # fmt: skip
    np.testing.assert_array_equal(read_volume(tmp_path / "pred" / "1_seg.nii.gz").array,
                                  predictor(read_volume(scan)).array)  # fmt: skip


def test_frozen_warmup_keeps_encoder_and_resume_is_identical(nnunet_model, tiny_dataset, tmp_path):
    config = _config(tmp_path / "cache", f"training.init_from={nnunet_model}", *NNUNET_SPACING, "training.epochs=2",
                     "training.freeze_encoder_epochs=1", "training.iterations_per_epoch=2")  # fmt: skip
    weights = _nnunet_weights(nnunet_model)

    def stop_after_first(epoch, row):
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, run_dir=tmp_path / "cut", data=tiny_dataset, progress=False, on_epoch_end=stop_after_first)
    warm = load_checkpoint(tmp_path / "cut" / "last.pt")["model"]
    encoder = [k for k in weights if k.startswith("encoder.")]
    decoder = [k for k in weights if k.startswith("decoder.") and not k.startswith("decoder.encoder.")]
    assert len(encoder) > 10 and all(torch.equal(warm[f"net.{k}"], weights[k]) for k in encoder)
    assert sum(not torch.equal(warm[f"net.{k}"], weights[k]) for k in decoder) > len(decoder) // 2

    train(load_run_config(tmp_path / "cut"), run_dir=tmp_path / "cut", resume=True, progress=False)  # as the CLI
    train(config, run_dir=tmp_path / "full", data=tiny_dataset, progress=False)
    full, resumed = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert resumed["epoch"] == 2 and not torch.equal(full["model"]["net.encoder.stages.0.0.convs.0.conv.weight"],
                                                     weights["encoder.stages.0.0.convs.0.conv.weight"])
    for key, value in full["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=0, atol=0, msg=key)
    assert [r["train_loss"] for r in resumed["history"]] == [r["train_loss"] for r in full["history"]]


def test_medseg_unet_encoder_is_found(source_run):
    run, cache = source_run
    model, *_ = build_network(_config(cache, f"training.init_from={run}"))
    names = {id(p) for m in encoder_modules(model) for p in m.parameters()}
    assert {id(p) for p in model.net.input_block.parameters()} <= names
    assert not names & {id(p) for p in model.net.output_block.parameters()}


@pytest.mark.parametrize("overrides, match", [
    (["training.freeze_encoder_epochs=2"], "needs training.init_from"),
    (["training.init_plan=scan", "training.init_from=x"], "training.init_plan must be model or data"),
    (["training.init_fold=-1", "training.init_from=x"], "training.init_fold must be >= 0"),
])  # fmt: skip
def test_rules(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_pipeline("liver", device="cpu", overrides=overrides)


def test_bad_model_is_one_line_exit_2(source_run, tiny_dataset, tmp_path, capsys):
    run, _ = source_run
    base = ["train", "liver-2d", "--data", str(tiny_dataset), "--device", "cpu", "--no-progress"]
    cases = [(["--init-from", str(tmp_path / "nowhere")], "no such run folder, checkpoint or nnU-Net"),
             (["--init-from", str(tmp_path)], "not a medseg run (no best.pt/last.pt)"),
             (["--init-from", str(run)], "a 3D model cannot start a 2D pipeline"),
             (["--init-from", str(run), "--resume"], "--init-from/--init-fold start a new run")]  # fmt: skip
    for i, (flags, message) in enumerate(cases):
        assert main([*base, "--out", str(tmp_path / f"out{i}"), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / f"out{i}" / "last.pt").exists()
    with pytest.raises(DataError, match="weights do not fit"):
        torch.save({"format_version": 1, "model": {"x": torch.zeros(1)},
                    **{k: v for k, v in load_checkpoint(run / "last.pt").items() if k not in ("model",)}},
                   tmp_path / "bad.pt")  # fmt: skip
        build_network(_config("unused", f"training.init_from={tmp_path / 'bad.pt'}"))
