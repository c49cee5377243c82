"""nnU-Net v2 itself, run in a child process (its paths are environment variables read at import).

``python _nnunet_oracle.py build ROOT``: a tiny phantom data set in nnU-Net's raw format, nnU-Net's own
fingerprint, planner and preprocessor, then its own ``nnUNetTrainer`` for a few iterations, saved by its
own ``save_checkpoint`` as ``fold_0/checkpoint_final.pth`` (and ``checkpoint_best.pth``). The plans are
edited after planning (a smaller network and patch, an anisotropic target spacing and a transposed axis
order) so that the tiny scans exercise several windows, nnU-Net's separate-z resampling and its transpose.

``python _nnunet_oracle.py predict MODEL_FOLDER OUT_FOLDER MIRROR FILE...``: ``nnUNetPredictor`` on the
files (fold 0, ``checkpoint_final.pth``), probabilities saved.

``python _nnunet_oracle.py validate ROOT``: the ``nnUNetv2_train ... --val`` step on the model ``build`` left:
its ``run_training`` loads ``fold_0/checkpoint_final.pth`` and runs the trainer's ``perform_actual_validation``, which
writes ``fold_0/validation/<case>.nii.gz`` and nnU-Net's ``summary.json`` (its per-label Dice).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

DATASET = "Dataset501_Phantom"
TRAINER, PLANS, CONFIG = "nnUNetTrainer", "nnUNetPlans", "3d_fullres"
CASES = 4


def _write_raw(root: Path) -> None:
    from medseg.data import make_phantom
    from medseg.io.nifti import write_nifti

    raw = root / "raw" / DATASET
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    (raw / "labelsTr").mkdir(parents=True, exist_ok=True)
    for index in range(CASES):
        case = make_phantom(size="tiny", seed=0, index=index)
        write_nifti(case.image, raw / "imagesTr" / f"case_{index:03d}_0000.nii.gz")
        write_nifti(case.label, raw / "labelsTr" / f"case_{index:03d}.nii.gz", label=True)
    dataset = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "tumor": 2},
               "numTraining": CASES, "file_ending": ".nii.gz"}
    (raw / "dataset.json").write_text(json.dumps(dataset))


def _edit_plans(path: Path) -> None:
    """A small network and patch; spacing (transposed order) anisotropic beyond nnU-Net's threshold of 3."""
    plans = json.loads(path.read_text())
    plans["transpose_forward"], plans["transpose_backward"] = [1, 0, 2], [1, 0, 2]
    config = plans["configurations"][CONFIG]
    config["spacing"] = [4.0, 13.0, 4.0]
    config["patch_size"] = [32, 16, 32]
    config["batch_size"] = 2
    kwargs = config["architecture"]["arch_kwargs"]
    kwargs.update(n_stages=3, features_per_stage=[4, 8, 16], kernel_sizes=[[3, 3, 3]] * 3,
                  strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]], n_conv_per_stage=[1, 1, 1],
                  n_conv_per_stage_decoder=[1, 1])
    path.write_text(json.dumps(plans, indent=2))


def build(root: Path) -> None:
    import random

    import numpy as np
    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    torch.manual_seed(0)  # and NumPy's and Python's generators: its sampling and augmentation draw from them
    np.random.seed(0)  # noqa: NPY002 (nnU-Net draws from the legacy global generator)
    random.seed(0)
    extract_fingerprints([501], num_processes=1, check_dataset_integrity=True, verbose=False)
    plan_experiments([501])
    _edit_plans(root / "preprocessed" / DATASET / f"{PLANS}.json")
    preprocess([501], PLANS, configurations=(CONFIG,), num_processes=(1,), verbose=False)
    ids = [f"case_{i:03d}" for i in range(CASES)]
    splits = [{"train": ids[:-1], "val": ids[-1:]}]  # one fold (its default 5-fold split needs 5 cases)
    (root / "preprocessed" / DATASET / "splits_final.json").write_text(json.dumps(splits))
    plans = json.loads((root / "preprocessed" / DATASET / f"{PLANS}.json").read_text())
    dataset = json.loads((root / "raw" / DATASET / "dataset.json").read_text())
    os.environ["nnUNet_n_proc_DA"] = "0"  # no augmentation workers (the planner needs it >= 1)
    plans["continue_training"] = False  # read by its __init__ (run_training sets it)
    trainer = nnUNetTrainer(plans, CONFIG, 0, dataset, device=torch.device("cpu"))
    trainer.num_epochs, trainer.num_iterations_per_epoch = 1, int(os.environ.get("ORACLE_ITERATIONS", "60"))
    trainer.initial_lr = 0.05
    trainer.num_val_iterations_per_epoch = 1
    trainer.on_train_start()  # one epoch of its run_training loop, without the final validation export
    trainer.on_epoch_start()
    trainer.on_train_epoch_start()
    outputs = [trainer.train_step(next(trainer.dataloader_train)) for _ in range(trainer.num_iterations_per_epoch)]
    trainer.on_train_epoch_end(outputs)
    with torch.no_grad():
        trainer.on_validation_epoch_start()
        trainer.on_validation_epoch_end([trainer.validation_step(next(trainer.dataloader_val))])
    trainer.on_epoch_end()  # logs NumPy scalars, writes checkpoint_best.pth
    trainer.on_train_end()  # writes checkpoint_final.pth with its save_checkpoint

def validate() -> None:
    """``nnUNetv2_train 501 3d_fullres 0 --val``: its ``run_training`` with ``only_run_validation``."""
    import torch
    from nnunetv2.run.run_training import run_training

    run_training(DATASET, CONFIG, 0, only_run_validation=True, device=torch.device("cpu"))


def predict(model: str, out: str, mirror: bool, files: list[str]) -> None:
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirror,
                                perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(model, use_folds=(0,), checkpoint_name="checkpoint_final.pth")
    os.makedirs(out, exist_ok=True)
    outputs = [os.path.join(out, Path(f).name.replace("_0000.nii.gz", "")) for f in files]
    predictor.predict_from_files_sequential([[f] for f in files], outputs, save_probabilities=True, overwrite=True,
                                            folder_with_segs_from_prev_stage=None)


if __name__ == "__main__":
    command, target = sys.argv[1], Path(sys.argv[2])
    if command == "build":
        _write_raw(target)
        build(target)
    elif command == "validate":
        validate()
    else:
        predict(str(target), sys.argv[3], sys.argv[4] == "1", sys.argv[5:])
