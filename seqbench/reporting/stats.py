"""Intervals and tests for loss comparisons that include training randomness.

A stored run gives one value per test user (from its ranks); several seeds of one config give a
seeds x users matrix. Two sources of noise move a reported mean: which users happen to be in the
test set (user sampling) and which seed trained the model (training randomness). A test over the
users of one training run per loss only sees the first; the default test here sees both.

- :func:`seed_interval`: mean and t-interval over seeds (training randomness, these users).
- :func:`user_interval`: a bootstrap over users of one run (user sampling only).
- :func:`hierarchical_test` (default): difference of means with a standard error that adds the
  seed-to-seed variance of each side (Welch) and the user-sampling variance of the paired per-user
  difference; t reference with Welch-Satterthwaite degrees of freedom. Calibrated with 3 seeds.
- :func:`two_level_bootstrap`: resample seeds within each side, then users (the same users on
  both sides); percentile interval and a two-sided bootstrap p-value. Narrower than it should be
  with few seeds (a bootstrap of 3 values cannot produce t tails), hence not the default.
- :func:`welch_over_seeds`, :func:`paired_over_users`: the classic tests, kept as options.
- :func:`adjust`: Holm or Benjamini-Hochberg over the p-values of one table.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
TESTS: tuple[str, ...] = ("hierarchical", "bootstrap", "welch", "paired")
ADJUSTMENTS: tuple[str, ...] = ("holm", "bh", "none")
ADJUSTMENT_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg", "none": "no adjustment"}
BOOTSTRAP_SAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n_seeds: int
    covers: str  # "seeds" (training randomness) or "users" (user sampling only)


@dataclass(frozen=True)
class Comparison:
    """Proposed minus baseline: the difference, its interval, a p-value and what it covers."""

    test: str
    difference: float
    low: float
    high: float
    p_value: float
    n_proposed: int  # seeds
    n_baseline: int
    n_users: int
    covers: str  # "seeds+users" or "users" (one seed on a side: training randomness unseen)


def seed_interval(values: np.ndarray, level: float = LEVEL) -> Interval:
    """Mean over seeds and its t-interval; one seed gives a point (use :func:`user_interval`)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if values.size < 2:
        return Interval(mean, math.nan, math.nan, int(values.size), "seeds")
    half = float(stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return Interval(mean, mean - half, mean + half, int(values.size), "seeds")


def user_interval(per_user: np.ndarray, seed: int = 0, level: float = LEVEL, samples: int = BOOTSTRAP_SAMPLES) -> Interval:
    """Percentile bootstrap over users of one run's mean: covers user sampling only."""
    per_user = np.asarray(per_user, dtype=float)
    rng = np.random.default_rng(seed)
    means = per_user[rng.integers(0, per_user.size, size=(samples, per_user.size))].mean(axis=1)
    low, high = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return Interval(float(per_user.mean()), float(low), float(high), 1, "users")


def _check(proposed: np.ndarray, baseline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    proposed, baseline = np.atleast_2d(np.asarray(proposed, float)), np.atleast_2d(np.asarray(baseline, float))
    if proposed.shape[1] != baseline.shape[1]:
        raise ValueError(f"both sides need the same users, got {proposed.shape[1]} and {baseline.shape[1]}")
    return proposed, baseline


def hierarchical_test(proposed: np.ndarray, baseline: np.ndarray, level: float = LEVEL) -> Comparison:
    """``proposed``/``baseline``: seeds x users per-user values on the same users (columns aligned).

    Var(difference) = s_p^2/n_p + s_b^2/n_b (seed means; Welch) + Var_u(d_u)/U, where d_u is a user's
    seed-averaged difference. The user term also holds some seed x user noise that the seed terms
    already count, so the test errs on the conservative side. With one seed on a side its seed term
    is unknown: only the user term is used and ``covers`` says "users".
    """
    proposed, baseline = _check(proposed, baseline)
    n_p, n_b, users = proposed.shape[0], baseline.shape[0], proposed.shape[1]
    difference = float(proposed.mean() - baseline.mean())
    per_user = proposed.mean(axis=0) - baseline.mean(axis=0)
    terms = [(float(per_user.var(ddof=1)) / users if users > 1 else 0.0, users - 1)]
    covers = "users"
    if n_p >= 2 and n_b >= 2:
        terms += [(float(proposed.mean(axis=1).var(ddof=1)) / n_p, n_p - 1), (float(baseline.mean(axis=1).var(ddof=1)) / n_b, n_b - 1)]
        covers = "seeds+users"
    variance = sum(v for v, _ in terms)
    if variance <= 0 or not math.isfinite(variance):
        p = 1.0 if difference == 0 else 0.0
        return Comparison("hierarchical", difference, difference, difference, p, n_p, n_b, users, covers)
    df = variance**2 / sum(v**2 / d for v, d in terms if d > 0 and v > 0)
    se = math.sqrt(variance)
    t = difference / se
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    p = float(2 * stats.t.sf(abs(t), df))
    return Comparison("hierarchical", difference, difference - half, difference + half, p, n_p, n_b, users, covers)


def two_level_bootstrap(proposed: np.ndarray, baseline: np.ndarray, seed: int = 0, level: float = LEVEL,
                        samples: int = BOOTSTRAP_SAMPLES) -> Comparison:
    """Resample seeds within each side, then users (shared by both sides); percentile interval."""
    proposed, baseline = _check(proposed, baseline)
    rng = np.random.default_rng(seed)
    n_p, n_b, users = proposed.shape[0], baseline.shape[0], proposed.shape[1]
    differences = np.empty(samples)
    for i in range(samples):
        columns = rng.integers(0, users, users)
        rows_p, rows_b = rng.integers(0, n_p, n_p), rng.integers(0, n_b, n_b)
        differences[i] = proposed[np.ix_(rows_p, columns)].mean() - baseline[np.ix_(rows_b, columns)].mean()
    low, high = np.quantile(differences, [0.5 - level / 2, 0.5 + level / 2])
    tail = min((differences <= 0).mean(), (differences >= 0).mean())
    p = float(min(1.0, 2 * max(tail, 1 / samples)))
    covers = "seeds+users" if n_p >= 2 and n_b >= 2 else "users"
    return Comparison("bootstrap", float(proposed.mean() - baseline.mean()), float(low), float(high), p, n_p, n_b, users, covers)


def welch_over_seeds(proposed: np.ndarray, baseline: np.ndarray, level: float = LEVEL) -> Comparison:
    """Welch's t-test on the seed means (ignores user sampling); needs two seeds per side."""
    proposed, baseline = _check(proposed, baseline)
    a, b = proposed.mean(axis=1), baseline.mean(axis=1)
    difference = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return Comparison("welch", difference, math.nan, math.nan, math.nan, a.size, b.size, proposed.shape[1], "seeds")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zero variance on both sides: p is NaN
        result = stats.ttest_ind(a, b, equal_var=False)
        interval = result.confidence_interval(level)
    return Comparison("welch", difference, float(interval.low), float(interval.high), float(result.pvalue),
                      a.size, b.size, proposed.shape[1], "seeds")


def paired_over_users(proposed: np.ndarray, baseline: np.ndarray, level: float = LEVEL) -> Comparison:
    """Paired t-test over users of the seed-averaged values: user sampling only."""
    proposed, baseline = _check(proposed, baseline)
    a, b = proposed.mean(axis=0), baseline.mean(axis=0)
    difference = float(a.mean() - b.mean())
    if a.size < 2:
        return Comparison("paired", difference, math.nan, math.nan, math.nan, proposed.shape[0], baseline.shape[0], a.size, "users")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # identical per-user values: p is NaN
        result = stats.ttest_rel(a, b)
        interval = result.confidence_interval(level)
    return Comparison("paired", difference, float(interval.low), float(interval.high), float(result.pvalue),
                      proposed.shape[0], baseline.shape[0], a.size, "users")


def compare_losses(proposed: np.ndarray, baseline: np.ndarray, test: str = "hierarchical", seed: int = 0) -> Comparison:
    if test == "hierarchical":
        return hierarchical_test(proposed, baseline)
    if test == "bootstrap":
        return two_level_bootstrap(proposed, baseline, seed=seed)
    if test == "welch":
        return welch_over_seeds(proposed, baseline)
    if test == "paired":
        return paired_over_users(proposed, baseline)
    raise ValueError(f"unknown test '{test}': choose one of {', '.join(TESTS)}")


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment (controls the family-wise error); NaN stays NaN."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = order.size
    running = 0.0
    for i, index in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[index]))
        adjusted[index] = running
    return adjusted


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (controls the false discovery rate); NaN stays NaN."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    valid = ~np.isnan(p)
    if valid.any():
        adjusted[valid] = stats.false_discovery_control(p[valid], method="bh")
    return adjusted


def adjust(p_values: np.ndarray, method: str) -> np.ndarray:
    if method == "holm":
        return holm(p_values)
    if method == "bh":
        return benjamini_hochberg(p_values)
    if method == "none":
        return np.asarray(p_values, dtype=float)
    raise ValueError(f"unknown adjustment '{method}': choose one of {', '.join(ADJUSTMENTS)}")
