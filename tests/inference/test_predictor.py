"""The predictor: masks on the input's own grid for any storage orientation, modes, TTA, air skipping."""

from __future__ import annotations

from dataclasses import replace

import nibabel.orientations as nio
import numpy as np
import pytest
import torch
from scipy import ndimage

from medseg.data import make_phantom
from medseg.errors import ConfigError, DataError
from medseg.inference import InferenceSettings, PostprocessConfig, Predictor
from medseg.io import Volume


def _dice(a, b):
    return 2 * np.sum(a & b) / max(1, np.sum(a) + np.sum(b))


def _restore_as(volume: Volume, codes) -> Volume:
    """The same scan stored with axes ``codes`` (array flipped/permuted, affine compensating)."""
    transform = nio.ornt_transform(nio.io_orientation(volume.affine), nio.axcodes2ornt(codes))
    array = np.ascontiguousarray(nio.apply_orientation(volume.array, transform))
    return Volume(array, volume.affine @ nio.inv_ornt_aff(transform, volume.shape), volume.meta)


@pytest.fixture(scope="module")
def trained(trained_run):
    return Predictor.from_run(trained_run, device="cpu")


@pytest.mark.parametrize("index", [0, 1, 2, 3])  # RAS, LPS, LPI, ALS
def test_mask_has_input_shape_and_affine_and_finds_the_liver(trained, index):
    case = make_phantom(size="tiny", seed=1, index=index)
    labels = trained(case.image)
    assert labels.shape == case.image.shape
    np.testing.assert_array_equal(labels.affine, case.image.affine)
    assert labels.array.dtype == np.uint8 and set(np.unique(labels.array)) <= {0, 1, 2}
    assert _dice(labels.array > 0, case.label.array > 0) > 0.6  # briefly trained; a flipped map scores < 0.3


@pytest.mark.parametrize("codes", [("L", "P", "S"), ("P", "S", "R"), ("S", "L", "A")])
def test_prediction_follows_the_scan_when_it_is_stored_flipped_or_permuted(trained, codes):
    """Same anatomy stored differently: the label map is the same map, moved with the voxels."""
    image = make_phantom(size="tiny", seed=2, index=0).image  # stored RAS
    base = trained(image)
    moved_image = _restore_as(image, codes)
    moved = trained(moved_image)
    np.testing.assert_array_equal(moved.affine, moved_image.affine)
    np.testing.assert_array_equal(moved.array, _restore_as(base, codes).array)
    assert base.array.any()


def test_coarse_to_fine_agrees_with_full(trained):
    case = make_phantom(size="tiny", seed=1, index=1)
    full, full_stats = trained.with_settings(mode="full").predict(case.image)
    exact, exact_stats = trained.with_settings(mode="coarse-to-fine", fine_windows="reach").predict(case.image)
    assert full_stats["box"] is None and exact_stats["box"] is not None
    # "reach": the whole-scan windows that reach into the liver box run, so inside it the logits are the same
    assert _dice(full.array > 0, exact.array > 0) > 0.99
    # "centred" (default): the whole-scan windows centred in the box, the same where the liver is
    centred = trained(case.image)
    assert _dice(full.array > 0, centred.array > 0) > 0.99
    # "tile": windows laid over the box; another placement, a similar result (this 80-step model is
    # sensitive to placement; docs/benchmarks.md measures a trained model)
    tiled = trained.with_settings(fine_windows="tile")(case.image)
    ref = case.label.array > 0
    assert _dice(tiled.array > 0, ref) > _dice(full.array > 0, ref) - 0.1


def test_air_windows_are_skipped_without_changing_the_body(trained):
    scan = make_phantom(size="tiny", seed=1, index=0).image
    # widen the field of view with air (as a large-FOV scan), shifting the origin to keep the anatomy in place
    array = np.pad(scan.array, ((24, 24), (24, 24), (0, 0)), constant_values=-1000)
    affine = scan.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.array([24, 24, 0])
    image = Volume(array, affine, scan.meta)
    calls = {"n": 0}

    class Counting(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            calls["n"] += x.shape[0]
            return self.net(x)

    off = PostprocessConfig(keep_largest_liver=False, tumor_inside_liver_dilation_mm=None)
    base = trained.with_settings(mode="full", batch_size=1, postprocessing=off)
    counting = type(base)(**{**base.__dict__, "network": Counting(base.network)})
    counts = {}
    for skip in (False, True):
        calls["n"] = 0
        out = counting.with_settings(skip_air=skip)(image)
        counts[skip] = (calls["n"], out.array)
    # the phantom's body fills most of the field of view: at least one corner window holds only air
    assert counts[True][0] < counts[False][0]
    # inside the body (away from its edge, where interpolation reaches skipped air) nothing changes
    body = ndimage.binary_erosion(image.array > -500, iterations=2)
    np.testing.assert_array_equal(counts[True][1][body], counts[False][1][body])


def test_tta_runs_and_probabilities_sum_to_one(trained):
    """TTA changes the probabilities (each sums to one over the classes) and, without post-processing,
    its label map is their argmax but where the two restorations to the scan's grid differ. No Dice
    threshold between TTA and plain: on a weakly trained model it moves with the CPU's floating-point
    kernels (0.79 with oneDNN limited to AVX2)."""
    image = make_phantom(size="tiny", seed=1, index=2).image
    tta = trained.with_settings(tta=True, mode="full")
    probs = tta.predict_probabilities(image)
    plain = trained.with_settings(mode="full").predict_probabilities(image)
    for p in (probs, plain):
        assert p.array.shape == (3, *image.shape) and p.array.dtype == np.float32
        np.testing.assert_allclose(p.array.sum(0), 1.0, atol=1e-5)
    assert np.abs(probs.array - plain.array).max() > 1e-3  # the mirrored passes took part
    raw = PostprocessConfig(keep_largest_liver=False, tumor_inside_liver_dilation_mm=None)
    labels = tta.with_settings(postprocessing=raw)(image).array
    assert (labels == probs.array.argmax(0)).mean() > 0.998  # 19 of 66,816 voxels differ: the label path
    # restores the network-grid labels, the probability path interpolates the probabilities


def test_tta_mirrors_only_the_axes_seen_in_training(trained, monkeypatch, caplog):
    """TTA along the recorded axes equals averaging manual flips along them (dims 3, 4 of (B, C, X, Y, Z));
    an empty record means no TTA."""
    from medseg.inference import predictor as predictor_module

    image = make_phantom(size="tiny", seed=1, index=0).image
    seen = []
    real = predictor_module.mirrored

    def spy(network, *, spatial_dims, axes=None):
        seen.append(axes)
        return real(network, spatial_dims=spatial_dims, axes=axes)

    monkeypatch.setattr(predictor_module, "mirrored", spy)
    only_ap = replace(trained, run=replace(trained.run, mirror_axes=(1, 2))).with_settings(tta=True, mode="full")
    logits, _, _ = only_ap.predict_logits(image)
    assert seen == [(1, 2)]
    plain = trained.with_settings(mode="full")
    flips = [replace(trained, network=_Flipped(trained.network, dims)).with_settings(mode="full")
             for dims in [(), (3,), (4,), (3, 4)]]
    manual = torch.stack([f.predict_logits(image)[0] for f in flips]).mean(0)  # TTA averages logits
    torch.testing.assert_close(logits, manual, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(plain.predict_logits(image)[0], manual, atol=1e-2)
    none = replace(trained, run=replace(trained.run, mirror_axes=())).with_settings(tta=True, mode="full")
    torch.testing.assert_close(none.predict_logits(image)[0], plain.predict_logits(image)[0])
    assert "without mirroring" in caplog.text and len(seen) == 1


class _Flipped(torch.nn.Module):
    """The network applied to the input mirrored along ``dims``, its output mirrored back."""

    def __init__(self, network, dims):
        super().__init__()
        self.network, self.dims = network, tuple(dims)

    def forward(self, x):
        return self.network(x.flip(self.dims)).flip(self.dims) if self.dims else self.network(x)


def test_2d_model_with_context_slices(tmp_path):
    from medseg.models import build_model

    from .conftest import tiny_plan, write_run

    config = {"name": "unet", "spatial_dims": 2, "in_channels": 3, "out_channels": 3, "depth": 3, "base_filters": 4}
    torch.manual_seed(0)
    run = write_run(tmp_path / "run2d", build_model(config), plan=tiny_plan(), patch_size=(32, 32),
                    model_config=config, context_slices=1)
    predictor = Predictor.from_run(run, device="cpu")
    case = make_phantom(size="tiny", seed=0, index=3)
    labels = predictor(case.image)
    assert labels.shape == case.image.shape
    np.testing.assert_array_equal(labels.affine, case.image.affine)


def test_bad_runs_and_settings(tmp_path, untrained_run):
    with pytest.raises(DataError, match=r"no best\.pt or last\.pt"):
        Predictor.from_run(tmp_path)
    with pytest.raises(DataError, match="no such run"):
        Predictor.from_run(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"junk\.pt"):
        Predictor.from_run(tmp_path / "junk.pt")
    with pytest.raises(ConfigError, match="mode"):
        InferenceSettings(mode="fast")
    with pytest.raises(ConfigError, match="overlap"):
        InferenceSettings(overlap=1.5)
    predictor = Predictor.from_run(untrained_run, device="cpu")
    with pytest.raises(DataError, match="3D"):
        predictor(Volume(np.zeros((4, 4, 4, 2), np.int16), np.eye(4)))


@pytest.mark.gpu
def test_cuda_with_amp_matches_cpu(trained_run):
    cpu = Predictor.from_run(trained_run, device="cpu")
    gpu = Predictor.from_run(trained_run, device="cuda", settings=InferenceSettings(amp=True))
    image = make_phantom(size="tiny", seed=1, index=1).image
    assert gpu.device.type == "cuda"
    assert _dice(cpu(image).array > 0, gpu(image).array > 0) > 0.98


def test_bad_checkpoint_contents_name_the_file(untrained_run):
    """What the run record, the model builder and the weights refuse is one DataError naming the file."""
    from medseg.runs import load_checkpoint

    path = untrained_run / "best.pt"
    good = load_checkpoint(path)
    record_source = Predictor.from_checkpoint(good, device="cpu", source=path)
    assert record_source.patch_size == (16, 16, 16) and record_source.mirror_axes is None  # not recorded
    bad_post = {**good, "inference": {**good["inference"], "postprocessing": {"keep_largest": True}}}
    with pytest.raises(DataError, match=r"best\.pt: checkpoint: unknown postprocessing key\(s\) \['keep_largest'\]"):
        Predictor.from_checkpoint(bad_post, device="cpu", source=path)
    bad_model = {**good, "model_config": {**good["model_config"], "width": 3}}
    with pytest.raises(DataError, match=r"best\.pt: checkpoint: model: unknown key\(s\) width"):
        Predictor.from_checkpoint(bad_model, device="cpu", source=path)
    wrong_weights = {**good, "model_config": {**good["model_config"], "base_filters": 4}}
    with pytest.raises(DataError, match=r"best\.pt: weights do not fit the model config"):
        Predictor.from_checkpoint(wrong_weights, device="cpu", source=path)


def test_the_api_runs_the_scan_checks_of_the_cli(trained, caplog):
    """A notebook gets the warnings ``medseg predict`` gives (issue #28): same checks, same words."""
    import logging

    from medseg.inference.checks import ScanChecks

    case = make_phantom(size="tiny", seed=0, index=1)
    fine = Volume(case.image.array, case.image.affine @ np.diag([0.25, 0.25, 0.25, 1.0]), {"path": "fine.nii.gz"})
    labels, stats = trained.predict(fine)
    expected = ScanChecks(plan=trained.plan).before(fine) + ScanChecks(plan=trained.plan).after(fine, labels)
    assert stats["warnings"] == expected and any(w.startswith("spacing: voxel size") for w in expected)
    with caplog.at_level(logging.WARNING):
        trained(fine)
    assert any(r.getMessage().startswith("fine.nii.gz: spacing: voxel size") for r in caplog.records)
    with pytest.raises(DataError, match=r"^fine\.nii\.gz: --strict: spacing"):
        trained.with_settings(strict=True).predict(fine)
    assert trained.with_settings(scan_checks=False).predict(fine)[1]["warnings"] == []
    as_scan = Volume(case.label.array, case.label.affine, {"path": "segmentation-1.nii.gz"})
    with pytest.raises(DataError, match="this is a label map"):
        trained.predict(as_scan)


def test_predictor_holds_its_run_record(untrained_run):
    """The predictor reads plan, window, classes and provenance from the RunRecord of its checkpoint, as
    RunRecord.from_checkpoint reads them; an ensemble keeps one record per fold."""
    from medseg.runs import RunRecord, find_checkpoint, load_checkpoint

    path = find_checkpoint(untrained_run)
    expected = RunRecord.from_checkpoint(load_checkpoint(path, map_location="cpu"), source=path)
    single = Predictor.from_run(untrained_run, device="cpu")
    assert single.run == expected and single.fold_runs == ()
    assert single.plan == expected.plan and single.patch_size == expected.patch_size
    assert single.num_classes == expected.num_classes and single.labels == dict(expected.labels)
    assert single.training_data == (expected.training_data,)
    pair = Predictor.from_runs([untrained_run, untrained_run], device="cpu")
    assert pair.run == expected and pair.fold_runs == (expected, expected) and pair.members == 2
    assert pair.training_data == (expected.training_data,) * 2


def test_predict_with_crf_needs_lits_classes(trained):
    """The CRF candidate refines the liver's probabilities: another tool's classes (``--labels``) are refused
    in one line before any network pass (the pass itself: tests/training/test_crossval.py, slow)."""
    from medseg.inference.crf import CrfSettings
    from medseg.io.label_map import LabelMapping

    mapped = replace(trained, label_mapping=LabelMapping(liver=(1,), tumor=(2,)))
    with pytest.raises(ConfigError, match=r"^the dense CRF needs a run of LiTS' classes \(liver 1, tumor 2\); this "
                                          r"prediction maps another model's classes \(--labels\)$"):
        mapped.predict_with_crf(make_phantom(size="tiny", seed=0, index=1).image, CrfSettings())
