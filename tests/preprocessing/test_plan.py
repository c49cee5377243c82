"""Fingerprint statistics against numpy, plan derivation and normalisation against the formula."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medseg.data import make_phantom
from medseg.errors import ConfigError
from medseg.io import to_canonical
from medseg.preprocessing.plan import PreprocessingPlan, compute_fingerprint, plan_from_fingerprint


@pytest.fixture(scope="module")
def cases():
    return [make_phantom(size="tiny", seed=0, index=i) for i in range(4)]


def test_fingerprint_matches_numpy(cases):
    fp = compute_fingerprint(cases, workers=1, progress=False)
    json.dumps(fp)  # plain JSON types only
    # tiny cases have < 10,000 liver voxels each, so every foreground voxel is used
    values = np.concatenate([c.image.array[c.label.array > 0] for c in cases]).astype(np.float64)
    assert all(np.count_nonzero(c.label.array) < 10_000 for c in cases)
    stats = fp["foreground"]
    assert stats["samples"] == values.size
    assert stats["mean"] == pytest.approx(values.mean())
    assert stats["std"] == pytest.approx(values.std())
    assert stats["percentile_00_5"] == pytest.approx(np.percentile(values, 0.5))
    assert stats["percentile_99_5"] == pytest.approx(np.percentile(values, 99.5))
    # spacings are reported in canonical (R, A, S) order, whatever the storage order
    canonical = [to_canonical(c.image)[0].spacing_mm for c in cases]
    np.testing.assert_allclose(fp["spacings_mm"], canonical)
    np.testing.assert_allclose(fp["median_spacing_mm"], np.median(canonical, axis=0))
    assert fp["shapes"][3] == list(to_canonical(cases[3].image)[0].shape)
    assert fp["case_ids"] == ["0", "1", "2", "3"]


def test_fingerprint_samples_large_cases_reproducibly(cases):
    big = make_phantom(size="small", seed=0, index=0)
    first = compute_fingerprint([big], workers=1, progress=False, seed=3)
    again = compute_fingerprint([big], workers=1, progress=False, seed=3)
    assert first == again and first["foreground"]["samples"] == 10_000
    values = big.image.array[big.label.array > 0].astype(float)
    assert first["foreground"]["mean"] == pytest.approx(values.mean(), abs=3 * values.std() / np.sqrt(10_000))


def test_plan_from_fingerprint_and_roundtrip(cases):
    fp = compute_fingerprint(cases, workers=1, progress=False)
    plan = plan_from_fingerprint(fp)
    fg = fp["foreground"]
    assert plan.normalization == "ct_zscore"
    assert plan.clip_hu == (fg["percentile_00_5"], fg["percentile_99_5"])
    assert (plan.mean, plan.std) == (fg["mean"], fg["std"])
    assert plan.target_spacing_mm == tuple(fp["median_spacing_mm"])
    assert PreprocessingPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    window = plan_from_fingerprint(fp, normalization="window", target_spacing_mm=(2, 2, 3), window_hu=(-100, 300))
    assert (window.clip_hu, window.mean, window.std, window.target_spacing_mm) == ((-100, 300), 100, 200, (2, 2, 3))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_spacing_mm": (1, 1)}, "target_spacing_mm"),
        ({"target_spacing_mm": (1, 0, 1)}, "target_spacing_mm"),
        ({"target_spacing_mm": (1, 1, 1), "normalization": "minmax"}, "normalization"),
        ({"target_spacing_mm": (1, 1, 1), "clip_hu": (5, -5)}, "clip_hu"),
        ({"target_spacing_mm": (1, 1, 1), "std": 0.0}, "std"),
    ],
)
def test_plan_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PreprocessingPlan(**kwargs)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="unknown plan keys"):
        PreprocessingPlan.from_dict({"target_spacing_mm": [1, 1, 1], "spacing": 2})
