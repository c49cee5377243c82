"""Every bad setting of issue 17 (and the class of value it stands for) stops `medseg train` with exit 2 and
one line naming the key, before the run folder or the preprocessed cache is touched."""

from __future__ import annotations

import pytest

from medseg.cli import main
from medseg.errors import ConfigError
from medseg.training.loader import load_pipeline

BAD = [
    ("model.dropout=abc", "model.dropout: expected a number, got 'abc'"),
    ("model.dropout=1.5", "model.dropout must be in [0, 1)"),
    ("model.strides=5", "model.strides: expected a list, got 5"),
    ("model.strides=[[1,1,1],[0,2,2],[2,2,2],[2,2,2]]", "model.strides[1] must be a positive integer"),
    ("model.max_filters=0", "model.max_filters must be >="),
    ("model.depth=2", "model.depth must be an integer >= 3"),
    ("model.aspp_rates=[6]", "unknown key model.aspp_rates"),  # a parameter of another model
    ("optimizer.weight_decay=-1", "optimizer.weight_decay must be >= 0, got -1.0"),
    ("optimizer.betas=[2,0.9]", "optimizer.betas must be two numbers in [0, 1), got [2.0, 0.9]"),
    ("optimizer.momentum=1", "optimizer.momentum must be in [0, 1)"),
    ("loss.params.class_weights=[1]", "loss.params.class_weights needs one value per class (data.num_classes=3)"),
    ("loss.params.class_weights=[1,-1,4]", "loss.params.class_weights must hold numbers >= 0"),
    ("loss.params.class_weights=[1,.nan,4]", "loss.params.class_weights[1]: expected a finite number"),
    ("loss={name: focal, params: {gamma: -1}}", "loss 'focal': gamma=-1 must be >= 0"),
    ("loss={name: hausdorff, params: {spacing_mm: [1,1,1]}}", "loss.params.spacing_mm: distance losses take"),
    ("data.num_classes=2", "data.labels must name every class 0..1 of data.num_classes=2"),
    ("data.folds=1", "data.folds must be >= 2"),
    ("optimizer.lr=.inf", "optimizer.lr: expected a finite number, got inf"),
    ("optimizer.lr=0", "optimizer.lr must be > 0"),
    ("schedule.power=.nan", "schedule.power: expected a finite number, got nan"),
    ("training.grad_clip_norm=-1", "training.grad_clip_norm must be > 0 or null"),
    ("training.seed=-3", "training.seed must be >= 0"),
    ("validation.overlap=1", r"validation.overlap must be in [0, 0.75]"),
    ("validation.overlap=0.99", r"validation.overlap must be in [0, 0.75], got 0.99"),
    ("augmentation.gamma_range=[0.7,.inf]", "augmentation.gamma_range[1]: expected a finite number"),
    ("augmentation.noise_prob=2", "augmentation.noise_prob must be a probability"),
    ("postprocessing.min_lesion_volume_mm3=-5", "postprocessing.min_lesion_volume_mm3 must be >= 0"),
    ("preprocessing.target_spacing_mm=[1,0,1]", "preprocessing.target_spacing_mm must be 3 positive numbers"),
    ("preprocessing.window_hu=[250,-150]", "preprocessing.window_hu must be [low, high] with low < high"),
    ("device=tpu", "device must be auto, cpu, cuda or cuda:N"),
]


@pytest.mark.parametrize(("override", "message"), BAD)
def test_bad_setting_exits_2_in_one_line_before_any_data(tiny_dataset, tmp_path, capsys, override, message):
    out, cache = tmp_path / "run", tmp_path / "cache"
    code = main(["train", "liver", "--data", str(tiny_dataset), "--out", str(out), "--device", "cpu",
                 "--set", f"data.cache_dir={cache}", "--set", override])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("medseg train: error: ") and message in err[0], err
    assert "Traceback" not in err[0]
    assert not out.exists() and not cache.exists()  # nothing written, nothing preprocessed


def test_loss_weights_follow_the_number_of_classes():
    two = ["data.num_classes=2", "data.labels={'0': background, '1': liver}", "validation.metric=liver_dice"]
    config = load_pipeline("liver", device="cpu", overrides=[*two, "loss.params.class_weights=[1, 3]"])
    assert config.loss.params["class_weights"] == [1, 3] and config.model_config()["out_channels"] == 2
    with pytest.raises(ConfigError, match=r"class_weights needs one value per class \(data.num_classes=2\), got 3"):
        load_pipeline("liver", device="cpu", overrides=two)  # the CPU profile's [1, 1, 4] is for 3 classes
    with pytest.raises(ConfigError, match=r"validation\.metric tumor_dice needs data\.num_classes >= 3"):
        load_pipeline("liver", device="cpu", overrides=[*two, "loss.params.class_weights=[1, 3]",
                                                        "validation.metric=tumor_dice"])  # fmt: skip
