"""Run nnU-Net v2's ``nnUNetPredictor`` on one NIfTI scan with a TorchScript network (``.venv-bench`` only).

Called by ``bench_nnunet_peer.py`` as ``.venv-bench/bin/python benchmarks/_nnunet_child.py SPEC.json``; the
spec names the scan, the output, the exported network (``(B, C, x, y, z)`` in medseg's canonical RAS order),
the patch, spacing and CT normalisation, whether to mirror, and optionally ``data_order`` (the spline order
of nnU-Net's image resampling; its default, 3, unless given). Prints one JSON line: seconds.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager


class _ToRAS(torch.nn.Module):
    """nnU-Net's readers hand ``(z, y, x)`` of the RAS image; medseg's network takes ``(x, y, z)``."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, x):
        return self.network(x.permute(0, 1, 4, 3, 2)).permute(0, 1, 4, 3, 2)


def _plans(spec: dict) -> dict:
    rev = lambda v: list(reversed(v))  # noqa: E731 - medseg (x, y, z) -> nnU-Net (z, y, x)
    config = {
        "data_identifier": "medseg", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": rev(spec["patch_size"]), "median_image_size_in_voxels": rev(spec["patch_size"]),
        "spacing": rev(spec["spacing_mm"]), "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": spec.get("data_order", 3), "order_z": 0,
                                      "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "batch_dice": False,
        "architecture": {"network_class_name": "medseg", "arch_kwargs": {}, "_kw_requires_import": []},
    }
    lo, hi = spec["clip_hu"]
    return {
        "dataset_name": "medseg_phantom", "plans_name": "medseg", "experiment_planner_used": "medseg",
        "original_median_spacing_after_transp": rev(spec["spacing_mm"]),
        "original_median_shape_after_transp": rev(spec["patch_size"]),
        "image_reader_writer": "NibabelIOWithReorient", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": config}, "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {
            "mean": spec["mean"], "std": spec["std"], "percentile_00_5": lo, "percentile_99_5": hi,
            "max": hi, "min": lo, "median": spec["mean"]}},
    }


def main(path: str) -> int:
    spec = json.loads(open(path).read())
    torch.set_num_threads(spec["threads"])
    network = _ToRAS(torch.jit.load(spec["network"]))
    plans = PlansManager(_plans(spec))
    dataset = {"labels": {"background": 0, "liver": 1, "tumor": 2}, "channel_names": {"0": "CT"},
               "file_ending": ".nii.gz", "numTraining": 0}
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=spec["mirror"],
                                perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    axes = tuple(2 - a for a in spec["mirror_axes"]) or None  # medseg axis a of (x, y, z) is nnU-Net's 2 - a
    predictor.manual_initialization(network, plans, plans.get_configuration("3d_fullres"),
                                    [network.state_dict()], dataset, "medseg", axes)
    os.makedirs(os.path.dirname(spec["out"]), exist_ok=True)
    t = time.perf_counter()
    predictor.predict_from_files_sequential([[spec["scan"]]], [spec["out"]], save_probabilities=False,
                                            overwrite=True, folder_with_segs_from_prev_stage=None)
    print(json.dumps({"seconds": time.perf_counter() - t}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
