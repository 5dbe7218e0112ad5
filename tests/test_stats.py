"""The statistics behind verdicts: intervals against scipy, the default test's calibration and
power on simulated tables, and the multiple-comparison adjustments against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from seqbench.reporting import stats


def test_seed_interval_is_scipys_t_interval() -> None:
    values = np.array([0.0226, 0.0341, 0.0348, 0.0385])
    interval = stats.seed_interval(values)
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=scipy_stats.sem(values))
    assert (interval.low, interval.high) == pytest.approx((low, high), rel=1e-12)
    assert interval.n_seeds == 4 and interval.covers == "seeds"
    single = stats.seed_interval(values[:1])
    assert math.isnan(single.low) and single.mean == values[0]


def test_user_interval_is_a_bootstrap_of_the_mean_over_users() -> None:
    rng = np.random.default_rng(0)
    per_user = rng.binomial(1, 0.3, size=2000).astype(float)
    interval = stats.user_interval(per_user, seed=1)
    se = per_user.std(ddof=1) / math.sqrt(per_user.size)
    assert interval.covers == "users" and interval.low < per_user.mean() < interval.high
    # A percentile bootstrap of a mean of 2000 values is close to the normal interval.
    assert interval.high - interval.low == pytest.approx(2 * 1.96 * se, rel=0.1)


def test_hierarchical_test_adds_seed_and_user_variance_by_hand() -> None:
    rng = np.random.default_rng(4)
    proposed, baseline = rng.random((3, 50)), rng.random((4, 50))
    result = stats.hierarchical_test(proposed, baseline)
    seed_p, seed_b = proposed.mean(axis=1).var(ddof=1) / 3, baseline.mean(axis=1).var(ddof=1) / 4
    per_user = proposed.mean(axis=0) - baseline.mean(axis=0)
    user = per_user.var(ddof=1) / 50
    variance = seed_p + seed_b + user
    df = variance**2 / (seed_p**2 / 2 + seed_b**2 / 3 + user**2 / 49)
    t = (proposed.mean() - baseline.mean()) / math.sqrt(variance)
    assert result.p_value == pytest.approx(2 * scipy_stats.t.sf(abs(t), df), rel=1e-10)
    half = scipy_stats.t.ppf(0.975, df) * math.sqrt(variance)
    assert (result.low, result.high) == pytest.approx((result.difference - half, result.difference + half), rel=1e-10)
    assert result.covers == "seeds+users" and (result.n_proposed, result.n_baseline, result.n_users) == (3, 4, 50)


def test_with_one_seed_the_default_is_the_paired_test_and_says_users_only() -> None:
    rng = np.random.default_rng(5)
    proposed, baseline = rng.random((1, 80)), rng.random((1, 80))
    result = stats.hierarchical_test(proposed, baseline)
    assert result.covers == "users"
    assert result.p_value == pytest.approx(scipy_stats.ttest_rel(proposed[0], baseline[0]).pvalue, rel=1e-10)


def test_welch_and_paired_options_are_scipys() -> None:
    rng = np.random.default_rng(6)
    proposed, baseline = rng.random((5, 30)), rng.random((5, 30))
    welch = stats.welch_over_seeds(proposed, baseline)
    assert welch.p_value == pytest.approx(scipy_stats.ttest_ind(proposed.mean(1), baseline.mean(1), equal_var=False).pvalue)
    paired = stats.paired_over_users(proposed, baseline)
    assert paired.p_value == pytest.approx(scipy_stats.ttest_rel(proposed.mean(0), baseline.mean(0)).pvalue)


def simulated_table(rng: np.random.Generator, seeds: int, shift: float, users: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Per-user hits of two losses on the same users: user difficulty, a per-seed model quality
    (training randomness) and seed x user noise; ``shift`` moves the proposed side's logit."""
    difficulty = rng.normal(size=users)

    def side(offset: float) -> np.ndarray:
        quality = rng.normal(0.0, 0.3, size=(seeds, 1))
        logit = difficulty + quality + rng.normal(0.0, 0.5, size=(seeds, users)) - 1.5 + offset
        return (rng.random((seeds, users)) < 1 / (1 + np.exp(-logit))).astype(float)

    return side(shift), side(0.0)


@pytest.mark.parametrize("seeds", [3, 5])
def test_the_default_test_is_calibrated_when_two_losses_are_the_same(seeds: int) -> None:
    rng = np.random.default_rng(seeds)
    tables = [simulated_table(rng, seeds, 0.0) for _ in range(200)]
    false_positives = np.mean([stats.hierarchical_test(p, b).p_value < 0.05 for p, b in tables])
    assert false_positives <= 0.08
    # The test over users alone, which ignores training randomness, is far from calibrated here.
    assert np.mean([stats.paired_over_users(p, b).p_value < 0.05 for p, b in tables]) > 0.3


def test_the_default_test_detects_a_real_shift() -> None:
    rng = np.random.default_rng(11)
    detected = np.mean([stats.hierarchical_test(*simulated_table(rng, 5, 1.0)).p_value < 0.05 for _ in range(100)])
    assert detected >= 0.8


def test_two_level_bootstrap_interval_contains_the_difference_and_is_seeded() -> None:
    rng = np.random.default_rng(2)
    proposed, baseline = simulated_table(rng, 4, 0.5)
    first = stats.two_level_bootstrap(proposed, baseline, seed=3, samples=400)
    again = stats.two_level_bootstrap(proposed, baseline, seed=3, samples=400)
    assert first == again and first.low < first.difference < first.high


def test_holm_and_benjamini_hochberg_by_hand() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, running maximum.
    assert stats.holm(p)[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: sorted p * 4 / rank = 0.02, 0.02, 0.04, 0.04, running minimum from the top.
    assert stats.benjamini_hochberg(p)[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert np.isnan(stats.holm(p)[4]) and np.isnan(stats.benjamini_hochberg(p)[4])
    assert stats.adjust(np.array([0.6, 0.7]), "holm") == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError):
        stats.adjust(p, "bonferroni")
