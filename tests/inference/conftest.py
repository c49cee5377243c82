"""Inference fixtures: checkpoints in the training format, untrained and briefly trained on tiny phantoms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

MODEL_CONFIG = {"name": "unet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3, "depth": 3,
                "base_filters": 8}
PATCH = (16, 16, 16)


def tiny_plan():
    from medseg.preprocessing import PreprocessingPlan

    return PreprocessingPlan.window((12.0, 12.0, 12.0), (-150.0, 250.0))


def write_run(run_dir, model, *, plan, patch_size=PATCH, model_config=MODEL_CONFIG, postprocessing=None,
              context_slices=0):
    """Save ``model`` as ``run_dir/best.pt`` in the training checkpoint format; returns ``run_dir``."""
    from medseg.runs.checkpoint import save_checkpoint

    run_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run_dir / "best.pt", {
        "model": model.state_dict(),
        "model_config": dict(model_config),
        "plan": plan.to_dict(),
        "config": {},
        "inference": {"patch_size": list(patch_size), "context_slices": context_slices,
                      "spatial_dims": model_config["spatial_dims"], "num_classes": 3,
                      "labels": {"0": "background", "1": "liver", "2": "tumor"},
                      "postprocessing": postprocessing or {"keep_largest_liver": True,
                                                           "tumor_inside_liver_dilation_mm": 5.0,
                                                           "min_lesion_volume_mm3": 0.0}},
        "epoch": 1,
        "best_metric": 0.0,
    })
    return run_dir


@pytest.fixture(scope="session")
def untrained_run(tmp_path_factory):
    from medseg.models import build_model

    torch.manual_seed(0)
    return write_run(tmp_path_factory.mktemp("untrained") / "run", build_model(MODEL_CONFIG), plan=tiny_plan())


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A tiny 3D U-Net trained for 80 steps on 4 tiny phantoms (seed 0) at 12 mm: liver Dice ~0.8."""
    from monai.losses import DiceCELoss

    from medseg.data import make_phantom
    from medseg.models import build_model
    from medseg.preprocessing import preprocess_image, preprocess_label

    plan = tiny_plan()
    images, labels = [], []
    for index in range(4):
        case = make_phantom(size="tiny", seed=0, index=index)
        image, record = preprocess_image(case.image, plan)
        label = preprocess_label(case.label, record)
        pad = [(0, max(0, p - s)) for p, s in zip(PATCH, image.shape)]
        images.append(np.pad(image, pad, constant_values=-1.0))
        labels.append(np.pad(label, pad))
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model(MODEL_CONFIG)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    model.train()
    for _ in range(80):
        xs, ys = [], []
        for _ in range(2):
            i = int(rng.integers(len(images)))
            start = [int(rng.integers(0, s - p + 1)) for s, p in zip(images[i].shape, PATCH)]
            sl = tuple(slice(a, a + p) for a, p in zip(start, PATCH))
            xs.append(images[i][sl])
            ys.append(labels[i][sl])
        x = torch.from_numpy(np.stack(xs))[:, None].float()
        y = torch.from_numpy(np.stack(ys))[:, None].long()
        out = model(x)
        out = out[0] if isinstance(out, list | tuple) else out
        loss = loss_fn(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return write_run(tmp_path_factory.mktemp("trained") / "run", model, plan=plan)


@pytest.fixture(scope="session")
def two_fold_runs(trained_run, untrained_run, tmp_path_factory):
    """A folder of two fold runs, as ``medseg train --fold all`` writes: fold0 trained, fold1 untrained (so
    they disagree). Shared: tests that write into it copy it first."""
    import shutil

    root = tmp_path_factory.mktemp("folds") / "liver"
    shutil.copytree(trained_run, root / "fold0")
    shutil.copytree(untrained_run, root / "fold1")
    return root
