"""Training from partial annotations (issue #30): the ignore label through sampling, the objective,
validation and the cross-validation post-processing choice."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import ConfigError
from medseg.inference.postprocess import PostprocessConfig
from medseg.io import Volume, affine_from_geometry
from medseg.losses import CompoundLoss, DeepSupervisionLoss, SegLoss
from medseg.models import build_model
from medseg.preprocessing import PreprocessingPlan, preprocess_dataset
from medseg.training.data import PatchDataset, PatchSettings
from medseg.training.loader import load_pipeline
from medseg.training.objective import build_objective
from medseg.training.postprocessing_search import score_combinations
from medseg.training.sampling import pick_foreground_voxel
from medseg.training.validate import region_dice

IGNORE = 3
SMALL = ["model.depth=3", "model.base_filters=8", "model.strides=null"]


@pytest.fixture(scope="module")
def sparse_cache(tmp_path_factory):
    """One 30 x 30 x 16 case: a liver block with a tumor, and a larger unannotated slab (value 3)."""
    shape = (30, 30, 16)
    label = np.zeros(shape, np.uint8)
    label[:, :, 8:] = IGNORE  # half the volume not annotated: most stored locations are ignored voxels
    label[5:12, 5:12, 2:7] = 1
    label[7:9, 7:9, 3:5] = 2
    image = np.random.default_rng(0).normal(0, 100, shape).astype(np.int16)
    affine = affine_from_geometry((1.0, 1.0, 1.0))
    plan = PreprocessingPlan((1.0, 1.0, 1.0), "ct_zscore", clip_hu=(-1000.0, 1000.0), mean=0.0, std=100.0)
    case = ("sparse", Volume(image, affine), Volume(label, affine))
    return preprocess_dataset([case], tmp_path_factory.mktemp("sparse"), plan, workers=1, progress=False)


def test_pick_foreground_voxel_never_picks_the_ignore_class():
    rng = np.random.default_rng(0)
    locations = {0: np.zeros((4, 3)), 1: np.ones((5, 3)), IGNORE: np.full((50, 3), 7)}
    classes = {pick_foreground_voxel(locations, rng, ignore_label=IGNORE)[0] for _ in range(200)}
    assert classes == {1}
    assert {pick_foreground_voxel(locations, rng)[0] for _ in range(200)} == {1, IGNORE}  # undeclared: a class
    assert pick_foreground_voxel({IGNORE: np.ones((3, 3))}, rng, ignore_label=IGNORE) is None


def test_foreground_patches_are_centred_on_annotated_foreground(sparse_cache):
    def centres(ignore_label):
        settings = PatchSettings(patch_size=(7, 7, 5), batch_size=2, foreground_fraction=1.0, ignore_label=ignore_label)
        ds = PatchDataset(sparse_cache, ["sparse"], settings)
        return np.array([int(ds[i]["label"][0, 3, 3, 2]) for i in range(300)])

    declared = centres(IGNORE)
    assert set(np.unique(declared)) == {1, 2}  # every patch centred on annotated liver or tumor
    assert (declared == 2).mean() == pytest.approx(0.5, abs=0.08)  # classes still picked uniformly
    assert (centres(None) == IGNORE).mean() > 0.2  # undeclared, the ignore value passes for a class


def test_objective_gives_every_term_the_ignore_label():
    config = load_pipeline("liver", device="cpu", overrides=[*SMALL, "data.ignore_label=3"])
    assert config.data.ignore_label == IGNORE
    loss = build_objective(config, build_model(config.model_config()))
    assert isinstance(loss, DeepSupervisionLoss) and isinstance(loss.loss, CompoundLoss)
    terms = [m for m in loss.modules() if isinstance(m, SegLoss)]
    assert len(terms) == 2 and all(t.ignore_index == IGNORE for t in terms)
    plain = load_pipeline("liver", device="cpu", overrides=SMALL)
    assert all(m.ignore_index is None for m in build_objective(plain, build_model(plain.model_config())).modules()
               if isinstance(m, SegLoss))


@pytest.mark.parametrize("value", ["1", "2", "256", "true"])
def test_ignore_label_must_lie_above_the_classes(value):
    with pytest.raises(ConfigError, match=r"data\.ignore_label"):
        load_pipeline("liver", device="cpu", overrides=[*SMALL, f"data.ignore_label={value}"])


def _sparse_pair():
    ref = np.zeros((12, 12, 6), np.uint8)
    ref[2:9, 2:9, :] = 1
    ref[4:6, 4:6, 1:4] = 2
    pred = ref.copy()
    ref[:, :, ::2] = IGNORE  # every other slice unannotated
    pred[:, :, 0] = 2  # wrong on unannotated voxels only
    pred[0:2, 0:2, 2] = 1
    return pred, ref


def test_validation_dice_counts_annotated_voxels_only():
    pred, ref = _sparse_pair()
    assert region_dice(pred, ref, ignore_label=IGNORE) == {"liver": 1.0, "tumor": 1.0}
    pred[2, 2, 1] = 0  # one annotated liver voxel missed: 2 * (n - 1) / (2n - 1)
    n = int(((ref == 1) | (ref == 2)).sum())
    assert region_dice(pred, ref, ignore_label=IGNORE)["liver"] == pytest.approx(2 * (n - 1) / (2 * n - 1))
    assert region_dice(*_sparse_pair())["liver"] < 0.9  # undeclared: the ignored voxels count as background


def test_postprocessing_choice_scores_annotated_voxels_only():
    pred, ref = _sparse_pair()
    configs = [PostprocessConfig(), PostprocessConfig(keep_largest_liver=True)]
    scores = score_combinations([(pred, ref, (1.0, 1.0, 1.0))], configs, ignore_label=IGNORE)
    np.testing.assert_allclose(scores, 1.0)
    assert score_combinations([(pred, ref, (1.0, 1.0, 1.0))], configs)[0, 0, 1] < 0.5


def test_out_of_fold_scoring_and_postprocessing_choice_use_the_folds_ignore_label(tiny_dataset, tmp_path):
    import nibabel as nib

    from medseg.data.discovery import Case
    from medseg.data.naming import prediction_filename
    from medseg.training.crossval import FoldCases, evaluate_out_of_fold
    from medseg.training.postprocessing_search import choose_postprocessing

    pred_dir = tmp_path / "crossval" / "predictions"
    pred_dir.mkdir(parents=True)
    cases = []
    for case in ("0", "1"):
        img = nib.load(tiny_dataset / f"segmentation-{case}.nii.gz")
        dense = np.asarray(img.dataobj)
        sparse = dense.copy()
        sparse[..., 1::2] = IGNORE
        wrong = np.where(sparse == IGNORE, 2, dense)  # tumor wherever nobody annotated
        nib.save(nib.Nifti1Image(sparse.astype(np.uint8), img.affine), tmp_path / f"ref-{case}.nii.gz")
        nib.save(nib.Nifti1Image(wrong.astype(np.uint8), img.affine), pred_dir / prediction_filename(case))
        cases.append(Case(case, tiny_dataset / f"volume-{case}.nii.gz", tmp_path / f"ref-{case}.nii.gz", "lits"))
    folds = [FoldCases(fold=0, run=tmp_path, cases=tuple(cases), ignore_label=IGNORE)]
    per_case, _, _ = evaluate_out_of_fold(folds, pred_dir)
    assert (per_case["liver_dice"] == 1.0).all() and (per_case["tumor_dice"] == 1.0).all()
    choice = choose_postprocessing(tmp_path, folds, grid_mm3=(100.0,))
    assert choice["dice"]["none"] == {"liver": 1.0, "tumor": 1.0}
