"""The post-processing chosen on cross-validation predictions, on constructed cases with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.inference.crf import CrfSettings, refine_labels
from medseg.inference.postprocess import PostprocessConfig
from medseg.training.postprocessing_search import (
    SearchSettings,
    candidates,
    choose_postprocessing_on,
    decide,
    score_combinations,
)

SPACING = (1.0, 1.0, 1.0)


def _liver():
    ref = np.zeros((40, 30, 30), np.uint8)
    ref[5:25, 5:25, 5:25] = 1
    ref[8:15, 8:15, 8:15] = 2  # a 343 mm^3 lesion
    return ref


def test_keep_largest_liver_and_min_lesion_volume_kept_where_they_help():
    ref = _liver()
    pred = ref.copy()
    pred[30:34, 2:6, 2:6] = 1  # a stray liver blob: keep the largest liver raises liver Dice
    pred[2:4, 27:29, 27:29] = 2  # stray tumor: gone with the stray components, so step 2 adds nothing
    pred[20, 20, 20] = 2  # 1 mm^3 false lesions inside the liver (become liver): min lesion volume
    pred[20, 10, 20] = 2
    configs = candidates((10.0, 1000.0))
    result = decide(score_combinations([(pred, ref, SPACING)], configs), configs)
    assert result["chosen"] == {"keep_largest_liver": True, "tumor_inside_liver_dilation_mm": None,
                                "min_lesion_volume_mm3": 10.0}  # 1000 would delete the true lesion  # fmt: skip
    assert [s["kept"] for s in result["steps"]] == [True, False, True]
    assert result["dice"]["chosen"] == {"liver": 1.0, "tumor": 1.0} and result["dice"]["none"]["tumor"] < 1.0


def test_tumor_inside_liver_kept_when_the_liver_has_two_parts():
    ref = _liver()
    ref[30:36, 2:8, 2:8] = 1  # the reference liver has two parts: keeping the largest would hurt
    pred = ref.copy()
    pred[36:39, 26:29, 26:29] = 2  # tumor (27 mm^3) over 10 mm from either part of the liver
    pred[20, 20, 20] = 2
    configs = candidates((10.0, 1000.0))
    scores = score_combinations([(pred, ref, SPACING), (ref, ref, SPACING)], configs)
    result = decide(scores, configs)
    assert result["chosen"] == {"keep_largest_liver": False, "tumor_inside_liver_dilation_mm": 5.0,
                                "min_lesion_volume_mm3": 10.0}  # fmt: skip
    assert result["cases"] == 2 and result["steps"][0]["kept"] is False


def test_steps_that_hurt_or_change_nothing_are_not_kept():
    ref = _liver()
    ref[30:36, 2:8, 2:8] = 1  # the reference liver has two parts: keeping the largest would hurt
    pred = ref.copy()
    pred[9, 9, 9] = 1  # a hole in the lesion; nothing for the tumor steps to remove
    configs = candidates((10.0,))
    result = decide(score_combinations([(pred, ref, SPACING)], configs), configs)
    assert result["chosen"] == {"keep_largest_liver": False, "tumor_inside_liver_dilation_mm": None,
                                "min_lesion_volume_mm3": 0.0}  # fmt: skip
    assert not any(s["kept"] for s in result["steps"])


def test_a_step_raising_its_region_but_lowering_another_is_refused():
    configs = candidates((10.0,))
    scores = np.zeros((1, len(configs), 2))
    for i, c in enumerate(configs):  # keep-largest raises liver; the tumor step raises tumor but lowers liver
        scores[0, i] = (0.9 + 0.05 * c.keep_largest_liver - 0.1 * (c.tumor_inside_liver_dilation_mm is not None),
                        0.5 + 0.2 * (c.tumor_inside_liver_dilation_mm is not None))
    result = decide(scores, configs)
    assert result["chosen"] == PostprocessConfig(keep_largest_liver=True, tumor_inside_liver_dilation_mm=None,
                                                 min_lesion_volume_mm3=0.0).to_dict()  # fmt: skip


def test_empty_tumor_both_sides_counts_as_agreement():
    ref = np.zeros((20, 20, 20), np.uint8)
    ref[2:18, 2:18, 2:18] = 1  # no tumor in the reference
    pred = ref.copy()
    pred[10, 10, 10] = 2  # one false lesion voxel: removing it takes tumor Dice from 0 to 1
    configs = candidates((10.0,))
    scores = score_combinations([(pred, ref, SPACING)], configs)
    base = configs.index(PostprocessConfig(False, None, 0.0))
    small = configs.index(PostprocessConfig(False, None, 10.0))
    assert scores[0, base, 1] == 0.0 and scores[0, small, 1] == 1.0
    assert decide(scores, configs)["chosen"]["min_lesion_volume_mm3"] == 10.0


def test_lesions_are_sized_by_the_grids_true_voxel_volume():
    """On a sheared grid (|det| half the spacing product) a 27-voxel lesion is 27 mm^3, below a 40 mm^3
    threshold: removed; by the spacing product (54 mm^3) it would stay (issue #29.3)."""
    import numpy as np

    from medseg.inference.postprocess import PostprocessConfig
    from medseg.training.postprocessing_search import score_combinations

    ref = np.zeros((12, 12, 12), np.uint8)
    ref[2:10, 2:10, 2:10] = 1
    ref[4:7, 4:7, 4:7] = 2  # 27 voxels of tumor
    affine = np.eye(4)
    affine[0, 1] = np.sqrt(3.0)  # column 1 = (sqrt 3, 1, 0): length 2 -> spacing 1, 2, 1; det 1
    spacing = (1.0, 2.0, 1.0)  # product 2 mm^3, |det| 1 mm^3: 27 voxels are 54 vs 27 mm^3
    config = [PostprocessConfig(keep_largest_liver=False, tumor_inside_liver_dilation_mm=None,
                                min_lesion_volume_mm3=40.0)]  # fmt: skip
    by_det = score_combinations([(ref, ref, spacing, affine)], config)
    by_spacing = score_combinations([(ref, ref, spacing)], config)
    assert by_spacing[0, 0, 1] == 1.0  # 54 mm^3 >= 40: kept, tumor Dice 1
    assert by_det[0, 0, 1] == 0.0  # 27 mm^3 < 40: the lesion became liver, tumor Dice 0


CRF = CrfSettings(appearance_weight=5.0)


def _blurred_edge_case(reference_edge: int):
    """Liver (60 HU) for x < 12, fat (-90 HU) beyond; the network's liver probability falls off late and softly
    (a sigmoid centred at x = 15), so its argmax ends at x = 15 and the CRF moves that boundary towards the
    intensity edge (tests/inference/test_crf.py). Reference liver: x < ``reference_edge``. Returns the raw
    argmax, the CRF-refined map, the reference."""
    shape = (32, 16, 8)
    x = np.indices(shape)[0].astype(np.float32)
    image = np.where(x < 12, 60.0, -90.0) + np.random.default_rng(1).normal(0, 4, shape)
    liver = 1.0 / (1.0 + np.exp((x - 15.0) / 2.0))
    p = np.stack([1.0 - liver, liver * 0.98, liver * 0.02]).astype(np.float32)
    raw = p.argmax(0).astype(np.uint8)
    refined = refine_labels(raw, p, image, spacing_mm=EDGE_SPACING, settings=CRF)
    return raw, refined, (x < reference_edge).astype(np.uint8)


EDGE_SPACING = (1.0, 1.0, 2.0)


def _hand_dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.sum(a & b) / (np.sum(a) + np.sum(b))


@pytest.mark.parametrize("reference_edge, kept", [(12, True), (15, False)])
def test_the_crf_is_kept_only_where_it_raises_dice(reference_edge, kept):
    """Reference at the intensity edge: the CRF raises liver Dice and is kept (first, the step applied first);
    reference where the network put it: the CRF lowers liver Dice and is dropped."""
    raw, refined, ref = _blurred_edge_case(reference_edge)
    configs = candidates((10.0,))
    case, crf_case = [(raw, ref, EDGE_SPACING)], [(refined, ref, EDGE_SPACING)]
    result = decide(score_combinations(case, configs), configs, crf_scores=score_combinations(crf_case, configs),
                    crf=CRF)
    step = result["steps"][0]
    assert step["step"] == "crf" and step["kept"] is kept
    before, after = _hand_dice(raw > 0, ref > 0), _hand_dice(refined > 0, ref > 0)
    assert step["before"]["liver"] == pytest.approx(before, abs=1e-6)
    assert step["tried"][0]["dice"]["liver"] == pytest.approx(after, abs=1e-6)
    assert bool(after > before) is kept  # the refined boundary really moved (the CRF did something either way)
    assert ("crf" in result["chosen"]) is kept
    if kept:
        assert result["chosen"]["crf"] == CRF.to_dict() and result["dice"]["chosen"]["liver"] == pytest.approx(after)
    without = decide(score_combinations(case, configs), configs)  # no CRF candidate: no CRF step
    assert [s["step"] for s in without["steps"]] == ["keep_largest_liver", "tumor_inside_liver", "min_lesion_volume"]


def test_the_crf_choice_in_postprocessing_json_reads_back(tmp_path):
    """Label map files (prediction, reference, CRF-refined prediction) -> postprocessing.json with ``"crf"``
    in the choice, which PostprocessConfig (what ``medseg predict --model RUNS`` reads) parses back."""
    import json

    import nibabel as nib

    affine = np.diag([*EDGE_SPACING, 1.0])
    pairs = []
    for k, edge in enumerate((12, 12, 15)):  # two cases gain ~0.1 Dice, one loses less: the mean rises
        raw, refined, ref = _blurred_edge_case(edge)
        paths = [tmp_path / f"{name}{k}.nii.gz" for name in ("pred", "ref", "crf")]
        for path, array in zip(paths, (raw, ref, refined)):
            nib.save(nib.Nifti1Image(array, affine), path)
        pairs.append(tuple(paths))
    out = tmp_path / "postprocessing.json"
    result = choose_postprocessing_on(pairs, out, SearchSettings(grid_mm3=(10.0,), crf=CRF))
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(result)) and written["cases"] == 3
    assert written["steps"][0]["step"] == "crf" and written["steps"][0]["kept"] is True
    assert PostprocessConfig.from_dict(written["chosen"]).crf == CRF
    plain = choose_postprocessing_on([p[:2] for p in pairs], tmp_path / "plain.json", SearchSettings(grid_mm3=(10.0,)))
    assert "crf" not in plain["chosen"] and plain["steps"][0]["step"] == "keep_largest_liver"
