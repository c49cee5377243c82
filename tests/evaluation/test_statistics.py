"""Sample SD, bootstrap CIs, paired comparisons and Bland-Altman, against independent calculations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from medseg.evaluation.statistics import (
    BootstrapSettings,
    bland_altman,
    bootstrap_mean_ci,
    describe,
    paired_comparison,
)

DICE = [0.951, 0.962, 0.948, 0.957, 0.944, 0.966, 0.959, math.nan, 0.953, 0.961]


def _manual_percentile_bootstrap(values: np.ndarray, n: int, seed: int) -> tuple[float, float]:
    """Efron's percentile interval written out: resample cases, take the 2.5 / 97.5 percentiles of the means."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n, values.size))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def test_describe_matches_pandas_and_skips_nan():
    stats = describe(DICE)
    series = pd.Series(DICE)
    assert stats["mean"] == pytest.approx(series.mean()) and stats["median"] == pytest.approx(series.median())
    assert stats["std"] == pytest.approx(series.std())  # ddof=1
    assert stats["std"] != pytest.approx(series.std(ddof=0))
    assert (stats["n"], stats["n_nan"], stats["min"], stats["max"]) == (9, 1, 0.944, 0.966)


def test_bootstrap_ci_is_reproducible_from_its_seed_and_agrees_with_a_manual_bootstrap():
    values = np.array([v for v in DICE if not math.isnan(v)])
    first = bootstrap_mean_ci(values, BootstrapSettings(seed=7))
    assert first == bootstrap_mean_ci(values, BootstrapSettings(seed=7))
    assert first != bootstrap_mean_ci(values, BootstrapSettings(seed=8))
    low, high = bootstrap_mean_ci(values, BootstrapSettings(n_resamples=20000))
    manual_low, manual_high = _manual_percentile_bootstrap(values, 200000, seed=1)
    assert low == pytest.approx(manual_low, abs=4e-4) and high == pytest.approx(manual_high, abs=4e-4)
    # and close to the normal approximation mean +- 1.96 SD / sqrt(n) for these well-behaved values
    half = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    assert (high - low) / 2 == pytest.approx(half, rel=0.15)


@pytest.mark.parametrize(("values", "expected"), [([], (math.nan, math.nan)), ([0.9], (math.nan, math.nan)),
                                                  ([0.9, 0.9, math.nan], (0.9, 0.9))])  # fmt: skip
def test_bootstrap_ci_edge_cases(values, expected):
    low, high = bootstrap_mean_ci(values)
    assert (low, high) == pytest.approx(expected, nan_ok=True)


def test_paired_comparison_against_scipy_wilcoxon():
    a = np.array([0.91, 0.88, 0.95, 0.90, 0.86, 0.93, 0.89, 0.92, math.nan, 0.94])
    b = np.array([0.89, 0.87, 0.95, 0.86, 0.85, 0.90, 0.90, 0.88, 0.80, 0.91])
    result = paired_comparison(a, b)
    keep = np.isfinite(a) & np.isfinite(b)
    assert result["n"] == 9 and result["n_nan"] == 1
    assert result["mean_difference"] == pytest.approx(np.mean(a[keep] - b[keep]))
    assert result["sd_difference"] == pytest.approx(np.std(a[keep] - b[keep], ddof=1))
    assert result["wilcoxon_p"] == pytest.approx(wilcoxon(a[keep], b[keep]).pvalue)
    assert 0 < result["wilcoxon_p"] < 0.05  # a better in 7 of 8 non-tied pairs
    low, high = result["ci95"]
    assert 0 < low < result["mean_difference"] < high
    identical = paired_comparison(b, b)
    assert identical["mean_difference"] == 0 and math.isnan(identical["wilcoxon_p"])


def test_bland_altman_by_hand():
    a, b = [10.0, 12.0, 9.0, 15.0], [9.0, 12.5, 8.0, 13.0]  # differences 1, -0.5, 1, 2
    result = bland_altman(a, b)
    sd = math.sqrt(((1 - 0.875) ** 2 + (-0.5 - 0.875) ** 2 + (1 - 0.875) ** 2 + (2 - 0.875) ** 2) / 3)
    assert result["bias"] == pytest.approx(0.875) and result["sd"] == pytest.approx(sd)
    assert result["lower_limit"] == pytest.approx(0.875 - 1.96 * sd)
    assert result["upper_limit"] == pytest.approx(0.875 + 1.96 * sd)
    assert result["mean"] == [9.5, 12.25, 8.5, 14.0] and result["difference"] == [1.0, -0.5, 1.0, 2.0]
    with pytest.raises(ValueError, match="equal lengths"):
        bland_altman([1.0], [1.0, 2.0])
