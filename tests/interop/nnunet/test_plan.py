"""nnU-Net's preprocessing, window and restoration reproduced: the probabilities of a seeded nnU-Net folder
against ``nnUNetPredictor`` run in this process on the same scan (fast; the trained-model comparison through
the CLI is test_against_nnunet.py, marked slow).

Where they may differ and why: nnU-Net sums the blended logits in float16 (medseg in float32), which moves
probabilities at a few voxels on the scan's faces (covered only by the rims of windows, where the Gaussian
weights are near float16's smallest normal number).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.data import make_phantom
from medseg.inference import InferenceSettings, Predictor
from medseg.interop.nnunet import NnUNetPlan

pytest.importorskip("nnunetv2")


def _nnunet_probabilities(folder, volume, *, mirror: bool) -> np.ndarray:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirror,
                                perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=(0,))
    image = np.asarray(volume.array, dtype=np.float32).transpose(2, 1, 0)[None]  # as SimpleITK reads the file
    spacing = list(reversed(volume.spacing_mm))
    _, probabilities = predictor.predict_single_npy_array(image, {"spacing": spacing}, None, None, True)
    return np.asarray(probabilities).transpose(0, 3, 2, 1)  # back to the file's (i, j, k)


@pytest.mark.parametrize("mirror", [False, True], ids=["no-mirroring", "mirroring"])
def test_probabilities_equal_nnunet(seeded_folder, mirror):
    volume = make_phantom(size="tiny", seed=0, index=3).image  # stored A-L-S: permuted in-plane axes
    settings = InferenceSettings(mode="full", skip_air=False, precision="float32", runtime="torch", tta=mirror)
    ours = Predictor.from_run(seeded_folder, device="cpu", settings=settings).predict_probabilities(volume).array
    theirs = _nnunet_probabilities(seeded_folder, volume, mirror=mirror)
    assert ours.shape == theirs.shape == (3, *volume.shape)
    difference = np.abs(ours - theirs)
    assert float(difference.mean()) < 0.01  # measured: 1.5e-4
    far = np.argwhere(difference.max(axis=0) > 0.01)  # measured: 0.2 % of the voxels, all on the faces
    assert len(far) < 0.005 * volume.array.size
    assert ((far <= 1) | (far >= np.asarray(volume.shape) - 2)).any(axis=1).all()
    agree = np.mean(ours.argmax(0) == theirs.argmax(0))
    assert agree > 0.99


def test_preprocessing_shapes_follow_the_plans(seeded_folder):
    import json

    plan = NnUNetPlan.from_plans(json.loads((seeded_folder / "plans.json").read_text()), "3d_fullres")
    volume = make_phantom(size="tiny", seed=0, index=0).image
    image, record, body = plan.prepare_scan(volume, air_threshold_hu=-500.0)
    k, j, i = reversed(volume.spacing_mm)  # SimpleITK's order, then transpose_forward (1, 0, 2)
    spacing = (j, k, i)
    shape = [volume.shape[2], volume.shape[1], volume.shape[0]]
    shape = [shape[1], shape[0], shape[2]]
    expected = tuple(max(round(s / t * n), p) for s, t, n, p in zip(spacing, plan.spacing, shape, plan.patch_size))
    assert image.shape == record.resampled_shape == expected
    assert body.shape == image.shape and 0 < float(body.float().mean()) < 1
    assert plan.target_spacing_mm == (4.0, 4.0, 13.0)  # file order (i, j, k)
