"""The statistics a methods section reports: sample SD, bootstrap confidence intervals, paired comparisons
and Bland-Altman agreement.

* Spread is the **sample** standard deviation (``ddof=1``, as pandas, R and SPSS report it); one value has
  none (NaN).
* A mean's 95% confidence interval is a **percentile bootstrap over cases** (Efron & Tibshirani, "An
  Introduction to the Bootstrap", 1993): cases resampled with replacement ``n_resamples`` times from a
  seeded generator, so the interval is reproducible from its seed. SciPy's ``scipy.stats.bootstrap`` does
  the resampling; fewer than two defined values, or values that are all equal, give no interval (NaN).
* Two models or two readers on the same cases: per-case paired differences ``a - b``, their mean with its
  bootstrap CI, and the two-sided **Wilcoxon signed-rank** p-value (``scipy.stats.wilcoxon``, zero
  differences dropped as in Wilcoxon's original test; NaN when every difference is zero or fewer than
  two pairs remain).
* Bland-Altman agreement (Bland & Altman, Lancet 1986): bias = mean difference, 95% limits of agreement
  = bias +- 1.96 sample SD of the differences.

NaN values (a metric not defined for a case) are skipped everywhere and counted (``n_nan``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_BOOTSTRAP", "BootstrapSettings", "bland_altman", "bootstrap_mean_ci", "describe",
           "paired_comparison"]


@dataclass(frozen=True)
class BootstrapSettings:
    """How confidence intervals are computed (recorded in ``summary.json`` as ``statistics``).

    Attributes:
        confidence: Coverage of the interval, in (0, 1).
        n_resamples: Bootstrap resamples of the cases.
        seed: Seed of the resampling generator (the same seed gives the same interval).
    """

    confidence: float = 0.95
    n_resamples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence!r}")
        if self.n_resamples < 100:
            raise ValueError(f"n_resamples must be >= 100, got {self.n_resamples!r}")

    def describe_method(self) -> dict:
        """The method as recorded beside the numbers (``summary.json`` ``statistics``)."""
        return {"sd": "sample standard deviation (ddof=1)",
                "ci": f"{self.confidence:.0%} percentile bootstrap of the mean over cases",
                "n_resamples": self.n_resamples, "seed": self.seed}  # fmt: skip


#: The defaults: 95%, 2000 resamples, seed 0.
DEFAULT_BOOTSTRAP = BootstrapSettings()


def _defined(values: Sequence[float] | np.ndarray) -> tuple[np.ndarray, int]:
    array = np.asarray(values, dtype=float).ravel()
    finite = np.isfinite(array)
    return array[finite], int(array.size - np.count_nonzero(finite))


def bootstrap_mean_ci(values: Sequence[float] | np.ndarray, settings: BootstrapSettings = DEFAULT_BOOTSTRAP
                      ) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of ``values`` (NaN skipped).

    Returns:
        ``(low, high)``; ``(nan, nan)`` for fewer than two defined values; ``(v, v)`` when all equal ``v``.
    """
    from scipy.stats import bootstrap

    defined, _ = _defined(values)
    if defined.size < 2:
        return math.nan, math.nan
    if np.all(defined == defined[0]):
        return float(defined[0]), float(defined[0])
    result = bootstrap((defined,), np.mean, confidence_level=settings.confidence, n_resamples=settings.n_resamples,
                       method="percentile", vectorized=True, random_state=np.random.default_rng(settings.seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def describe(values: Sequence[float] | np.ndarray, settings: BootstrapSettings = DEFAULT_BOOTSTRAP) -> dict:
    """Mean with its bootstrap CI, median, sample SD, min, max, ``n`` defined and ``n_nan`` skipped."""
    defined, n_nan = _defined(values)
    if defined.size == 0:
        return {"mean": math.nan, "ci95": [math.nan, math.nan], "median": math.nan, "std": math.nan,
                "min": math.nan, "max": math.nan, "n": 0, "n_nan": n_nan}  # fmt: skip
    return {
        "mean": float(defined.mean()),
        "ci95": list(bootstrap_mean_ci(defined, settings)),
        "median": float(np.median(defined)),
        "std": float(defined.std(ddof=1)) if defined.size > 1 else math.nan,
        "min": float(defined.min()),
        "max": float(defined.max()),
        "n": int(defined.size),
        "n_nan": n_nan,
    }


def _pairs(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal lengths, got {a.size} and {b.size}")
    both = np.isfinite(a) & np.isfinite(b)
    return a[both], b[both], int(a.size - np.count_nonzero(both))


def paired_comparison(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                      settings: BootstrapSettings = DEFAULT_BOOTSTRAP) -> dict:
    """``a`` against ``b`` on the same cases: mean of ``a - b`` with its bootstrap CI and the Wilcoxon
    signed-rank p-value (pairs with a NaN on either side skipped and counted in ``n_nan``)."""
    from scipy.stats import wilcoxon

    a, b, n_nan = _pairs(a, b)
    diff = a - b
    p_value = math.nan
    if np.count_nonzero(diff) >= 2:
        p_value = float(wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue)
    return {
        "mean_a": float(a.mean()) if a.size else math.nan,
        "mean_b": float(b.mean()) if b.size else math.nan,
        "mean_difference": float(diff.mean()) if diff.size else math.nan,
        "ci95": list(bootstrap_mean_ci(diff, settings)),
        "sd_difference": float(diff.std(ddof=1)) if diff.size > 1 else math.nan,
        "wilcoxon_p": p_value,
        "n": int(diff.size),
        "n_nan": n_nan,
    }


def bland_altman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> dict:
    """Bland-Altman agreement of two measurements of the same cases (e.g. volumes in mL).

    Returns:
        ``{"bias", "sd", "lower_limit", "upper_limit", "n", "n_nan", "mean": [...], "difference": [...]}``:
        bias = mean of ``a - b``; limits = bias +- 1.96 sample SD (NaN below two pairs); ``mean`` and
        ``difference`` per defined pair, for plotting.
    """
    a, b, n_nan = _pairs(a, b)
    diff = a - b
    bias = float(diff.mean()) if diff.size else math.nan
    sd = float(diff.std(ddof=1)) if diff.size > 1 else math.nan
    return {"bias": bias, "sd": sd, "lower_limit": bias - 1.96 * sd, "upper_limit": bias + 1.96 * sd,
            "n": int(diff.size), "n_nan": n_nan, "mean": ((a + b) / 2).tolist(), "difference": diff.tolist()}
