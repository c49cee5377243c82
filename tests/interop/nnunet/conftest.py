"""A real nnU-Net v2 results folder, made by nnunetv2 itself in a child process (``_nnunet_oracle.py``),
and nnU-Net's own predictions of two of its scans (mirroring off and on)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ORACLE = Path(__file__).with_name("_nnunet_oracle.py")
REPO = Path(__file__).resolve().parents[3]

pytest.importorskip("nnunetv2")


def _run(args: list[str], root: Path) -> None:
    env = {**os.environ, "nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "preprocessed"),
           "nnUNet_results": str(root / "results"), "nnUNet_n_proc_DA": "1", "nnUNet_def_n_proc": "1",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(ORACLE), *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="session")
def nnunet_folder(tmp_path_factory) -> Path:
    """``.../Dataset501_Phantom/nnUNetTrainer__nnUNetPlans__3d_fullres`` trained by nnU-Net for 60
    iterations (patch 32 x 16 x 32 over a transposed, anisotropic 4 x 13 x 4 mm grid)."""
    root = tmp_path_factory.mktemp("nnunet")
    _run(["build", str(root)], root)
    return root / "results" / "Dataset501_Phantom" / "nnUNetTrainer__nnUNetPlans__3d_fullres"


@pytest.fixture(scope="session")
def nnunet_scans(nnunet_folder) -> list[Path]:
    """Two of its scans: case 1 (stored L-P-S) and case 3 (A-L-S: permuted in-plane axes)."""
    raw = nnunet_folder.parents[2] / "raw" / "Dataset501_Phantom" / "imagesTr"
    return [raw / "case_001_0000.nii.gz", raw / "case_003_0000.nii.gz"]


@pytest.fixture(scope="session")
def nnunet_predictions(nnunet_folder, nnunet_scans, tmp_path_factory):
    """``mirror -> folder`` of ``nnUNetPredictor``'s ``case_XXX.nii.gz`` and ``case_XXX.npz``."""
    out = {}
    for mirror in (False, True):
        folder = tmp_path_factory.mktemp(f"nnunet_pred_{int(mirror)}")
        _run(["predict", str(nnunet_folder), str(folder), "1" if mirror else "0", *map(str, nnunet_scans)],
             nnunet_folder.parents[2])
        out[mirror] = folder
    return out


def seeded_plans() -> dict:
    """A small ``plans.json`` as nnU-Net writes it: a transposed axis order and a target spacing anisotropic
    beyond nnU-Net's threshold of 3 (so its separate-z resampling runs), a 3-stage PlainConvUNet."""
    config = {
        "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": [32, 16, 32], "median_image_size_in_voxels": [96, 18, 96], "spacing": [4.0, 13.0, 4.0],
        "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {"n_stages": 3, "features_per_stage": [4, 8, 16], "conv_op": "torch.nn.modules.conv.Conv3d",
                            "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
                            "n_conv_per_stage": [1, 1, 1], "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
                            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                            "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                            "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
        "batch_dice": False,
    }
    return {"dataset_name": "Dataset502_Seeded", "plans_name": "nnUNetPlans",
            "experiment_planner_used": "ExperimentPlanner",
            "original_median_spacing_after_transp": [8.0, 9.0, 8.0], "original_median_shape_after_transp": [48, 24, 48],
            "image_reader_writer": "SimpleITKIO", "transpose_forward": [1, 0, 2], "transpose_backward": [1, 0, 2],
            "configurations": {"3d_fullres": config}, "label_manager": "LabelManager",
            "foreground_intensity_properties_per_channel": {"0": {
                "max": 88.0, "mean": 51.1, "median": 52.0, "min": -89.0, "percentile_00_5": -89.0,
                "percentile_99_5": 88.0, "std": 23.6}}}


SEEDED_DATASET = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "tumor": 2},
                  "numTraining": 1, "file_ending": ".nii.gz"}


def write_seeded_folder(root: Path, *, plans: dict | None = None, dataset: dict | None = None, seed: int = 0) -> Path:
    """An nnU-Net model folder with a seeded He-initialised network, saved in nnU-Net's checkpoint layout
    (``network_weights``, ``init_args``, a training log of NumPy float32 scalars, ...)."""
    import json

    import numpy as np
    import torch
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from dynamic_network_architectures.initialization.weight_init import InitWeights_He

    plans = plans or seeded_plans()
    dataset = dataset or SEEDED_DATASET
    folder = root / plans["dataset_name"] / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dataset))
    kwargs = dict(seeded_plans()["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"])
    kwargs.update(conv_op=torch.nn.Conv3d, norm_op=torch.nn.InstanceNorm3d, nonlin=torch.nn.LeakyReLU)
    torch.manual_seed(seed)
    network = PlainConvUNet(input_channels=1, num_classes=3, deep_supervision=False, **kwargs)
    network.apply(InitWeights_He(1e-2))
    checkpoint = {"network_weights": network.state_dict(), "optimizer_state": {}, "grad_scaler_state": None,
                  "logging": {"mean_fg_dice": [np.float32(0.5)], "train_losses": [np.float32(0.3)]},
                  "_best_ema": None, "current_epoch": 1,
                  "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0, "dataset_json": dataset,
                                "device": torch.device("cpu")},
                  "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2)}
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")
    return folder


@pytest.fixture(scope="session")
def seeded_folder(tmp_path_factory) -> Path:
    """:func:`write_seeded_folder` once per session."""
    return write_seeded_folder(tmp_path_factory.mktemp("seeded_nnunet"))
