"""Paired comparison (variance components), Holm and power against hand computations and known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dataselect.report.stats import (
    holm,
    min_detectable_effect,
    paired_difference,
    pseudo_values,
    seeds_needed,
    variance_components,
)
from dataselect.train.metrics import METRICS, classification_metrics

M, S = 872, 5


def _arms(rng: np.random.Generator, k: int = 2, acc: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, k, M)
    wrong = (y[None, :] + rng.integers(1, k, (S, M))) % k
    return y, np.where(rng.random((S, M)) < acc, y, wrong)


def _plus_three_percent(y, pb):
    """Right wherever ``pb`` is right, and on 3 % more rows (per seed)."""
    pa = pb.copy()
    for s in range(len(pb)):
        fix = np.flatnonzero(pb[s] != y)[: int(0.03 * len(y))]
        pa[s, fix] = y[fix]
    return pa


@pytest.mark.parametrize("k", [2, 4])
def test_pseudo_values_average_to_each_seeds_metric(k):
    """Whatever the metric, a seed's row mean of ψ is its metric on the eval set (sklearn's)."""
    y, p = _arms(np.random.default_rng(k), k=k, acc=0.6)
    for metric in METRICS:
        psi = pseudo_values(y, p, k, metric)
        ref = [classification_metrics(y, row, k)[metric] for row in p]
        assert psi.shape == (S, M)
        np.testing.assert_allclose(psi.mean(axis=1), ref, atol=1e-9, err_msg=metric)


def test_pseudo_values_are_the_first_order_effect_of_each_row():
    """Macro-F1 is not a mean over rows; ψ_i is its linearisation: dropping row i moves the
    metric by (M - ψ_i) / (n - 1) up to second order in 1/n."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 400)
    p = np.where(rng.random(400) < 0.7, y, (y + 1) % 3)
    psi = pseudo_values(y, p[None], 3, "macro_f1")[0]
    full = classification_metrics(y, p, 3)["macro_f1"]
    for i in (0, 17, 200, 399):
        keep = np.arange(400) != i
        drop = classification_metrics(y[keep], p[keep], 3)["macro_f1"]
        assert drop - full == pytest.approx((full - psi[i]) / 399, abs=2e-5)


def test_accuracy_pseudo_values_are_right_or_wrong():
    y, p = _arms(np.random.default_rng(4))
    np.testing.assert_array_equal(pseudo_values(y, p, 2, "accuracy"), (p == y).astype(float))


def test_variance_components_by_hand():
    """A 2 × 3 table worked by hand: grand mean 1, seed means 0 and 2, row means 0, 1, 2;
    MS_row = 2·(1+0+1)/2 = 2, MS_seed = 3·(1+1)/1 = 6, residuals all 0 → MS_error = 0;
    Var = (2 + 6 - 0) / 6, Satterthwaite df = Var² / ((2/6)²/2 + (6/6)²/1)."""
    d = np.array([[-1.0, 0.0, 1.0], [1.0, 2.0, 3.0]])
    var, df, var_rows = variance_components(d)
    assert var == pytest.approx(8 / 6)
    assert df == pytest.approx((8 / 6) ** 2 / ((2 / 6) ** 2 / 2 + 1.0))
    assert var_rows == pytest.approx(2 / 6)


def test_variance_components_is_unbiased_for_the_two_way_model():
    """d_si = r_i + u_s + e_si with known variances: the estimate's average over many tables
    is Var(mean) = σ²_r/n + σ²_u/S + σ²_e/(nS), and so is the spread of the means themselves."""
    rng = np.random.default_rng(11)
    s, n, sr, su, se = 5, 200, 0.3, 0.05, 0.4
    truth = sr**2 / n + su**2 / s + se**2 / (n * s)
    est, means = [], []
    for _ in range(3000):
        d = rng.normal(0, sr, n)[None, :] + rng.normal(0, su, s)[:, None] + rng.normal(0, se, (s, n))
        est.append(variance_components(d)[0])
        means.append(d.mean())
    assert np.mean(est) == pytest.approx(truth, rel=0.05)
    assert np.var(means) == pytest.approx(truth, rel=0.08)


@pytest.mark.parametrize("metric", METRICS)
def test_three_percent_more_right_is_significant(metric):
    y, pb = _arms(np.random.default_rng(2))
    pa = _plus_three_percent(y, pb)
    r = paired_difference(y, pa, pb, 2, metric)
    assert r.delta > 0.02 and r.ci_low > 0 and r.p_value < 0.01
    per_seed = [classification_metrics(y, a, 2)[metric] - classification_metrics(y, b, 2)[metric]
                for a, b in zip(pa, pb, strict=True)]
    assert r.delta == pytest.approx(np.mean(per_seed), abs=1e-9)
    if metric == "accuracy":
        assert r.delta == pytest.approx(int(0.03 * M) / M)


def test_one_seed_is_the_paired_rows_t_interval():
    """One seed, arm A right wherever B is and on k rows more: d is k ones among m zeros, so
    se = sd(d) / sqrt(m) and the interval is Δ ± t_{m-1} · se."""
    from scipy import stats

    rng = np.random.default_rng(9)
    m, k = 500, 15
    y = rng.integers(0, 2, m)
    pb = np.where(rng.random(m) < 0.8, y, 1 - y)[None, :]
    pa = pb.copy()
    fix = np.flatnonzero(pb[0] != y)[:k]
    pa[0, fix] = y[fix]
    r = paired_difference(y, pa, pb, 2, "accuracy")
    d = (pa[0] == y).astype(float) - (pb[0] == y)
    se = d.std(ddof=1) / math.sqrt(m)
    assert r.delta == pytest.approx(k / m) and r.se == pytest.approx(se) and r.df == m - 1
    assert r.ci_high - r.delta == pytest.approx(stats.t.ppf(0.975, m - 1) * se)


def _study(rng: np.random.Generator, shift: float, m: int, s: int,
           sd_seed: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One simulated study: eval rows of varied difficulty drawn from a population, arm B
    right on row i with probability q_i, arm A with q_i + shift + u_s, independently per
    seed; u_s ~ N(0, sd_seed) is seed s's luck (its subset, its initialisation)."""
    q = rng.beta(8, 2, m)  # mean 0.8, rows easy and hard
    y = rng.integers(0, 2, m)
    u = rng.normal(0.0, sd_seed, (s, 1))
    right_b = rng.random((s, m)) < q
    right_a = rng.random((s, m)) < np.clip(q + shift + u, 0, 1)
    return y, np.where(right_a, y, 1 - y), np.where(right_b, y, 1 - y)


@pytest.mark.parametrize("sd_seed", [0.0, 0.01])
def test_interval_covers_a_known_difference_about_95_percent_of_the_time(sd_seed):
    """400 simulated studies with a true accuracy difference of 2 points (the population
    mean of the per-row shift, clipping and seed luck included): the 95 % interval covers
    it in 93-98 % of them. With no seed effect at all the interval is a little conservative
    (five seeds cannot tell σ_seed = 0 from small; the estimate is floored at the error
    term), ~96 %; the two-way bootstrap this replaced covered ~99 %."""
    m, s, shift, n_studies = 600, 5, 0.02, 400
    rng = np.random.default_rng(2024)
    q, u = rng.beta(8, 2, 2_000_000), rng.normal(0.0, sd_seed, 2_000_000)
    truth = float(np.mean(np.clip(q + shift + u, 0, 1) - q))
    covered = 0
    for i in range(n_studies):
        y, pa, pb = _study(np.random.default_rng(10_000 + i), shift, m, s, sd_seed)
        r = paired_difference(y, pa, pb, 2, "accuracy")
        covered += r.ci_low <= truth <= r.ci_high
    assert 0.93 <= covered / n_studies <= 0.98, covered / n_studies


@pytest.mark.slow
def test_macro_f1_interval_covers_its_population_value():
    """The same for macro-F1 (a ratio, not a mean): the population difference comes from one
    very large study of the same design; coverage 93-97 % over 300 studies."""
    m, s, shift = 600, 5, 0.02
    y, pa, pb = _study(np.random.default_rng(1), shift, 400_000, 1)
    truth = classification_metrics(y, pa[0], 2)["macro_f1"] - classification_metrics(y, pb[0], 2)["macro_f1"]
    covered = 0
    for i in range(300):
        r = paired_difference(*_study(np.random.default_rng(20_000 + i), shift, m, s, 0.01), 2, "macro_f1")
        covered += r.ci_low <= truth <= r.ci_high
    assert 0.93 <= covered / 300 <= 0.98, covered / 300


def test_holm_keeps_the_family_wise_error_under_a_simulated_null():
    """400 simulated families of 6 selectors, each no better than random (the same
    baseline arm in every comparison, as in a report): the share of families with any
    Holm rejection stays at or below 5 % (+ 2 standard errors of the estimate)."""
    m, s, k, n_families = 300, 5, 6, 400
    false = 0
    for f in range(n_families):
        rng = np.random.default_rng(50_000 + f)
        y, _, base = _study(rng, 0.0, m, s)
        q = rng.beta(8, 2, m)
        p = [paired_difference(y, np.where(rng.random((s, m)) < q, y, 1 - y), base, 2, "accuracy").p_value
             for _ in range(k)]
        false += bool((holm(np.array(p)) < 0.05).any())
    se = np.sqrt(0.05 * 0.95 / n_families)
    assert false / n_families <= 0.05 + 2 * se, false / n_families


def test_identical_arms_are_not_significant():
    y, p = _arms(np.random.default_rng(3))
    r = paired_difference(y, p, p.copy(), 2, "accuracy")
    assert r.delta == 0 and r.p_value == 1.0 and r.ci_low == r.ci_high == 0


def test_noisy_equal_arms_are_significant_about_5_percent_of_the_time():
    """Two independent arms of the same quality: the test keeps its level."""
    hits = 0
    for i in range(200):
        rng = np.random.default_rng(100 + i)
        y, pa = _arms(rng)
        pb = np.where(rng.random((S, M)) < 0.8, y, 1 - y)  # same quality, independent errors
        hits += paired_difference(y, pa, pb, 2, "accuracy").p_value < 0.05
    assert 2 <= hits <= 19  # binomial(200, 0.05): P(outside) < 0.5 %


def test_seed_spread_widens_the_interval():
    """Arms that differ a lot between seeds but not on average get a wide interval."""
    y, pb = _arms(np.random.default_rng(5))
    better = _plus_three_percent(y, pb)
    worse = pb.copy()
    for s in range(S):
        hit = np.flatnonzero(pb[s] == y)[: int(0.03 * M)]
        worse[s, hit] = 1 - y[hit]
    swing = np.stack([better[s] if s % 2 else worse[s] for s in range(S)])
    r = paired_difference(y, swing, pb, 2, "accuracy")
    assert r.ci_low < 0 < r.ci_high and r.p_value > 0.05
    assert r.sd_seed > 0.02 and r.se > math.sqrt(r.var_rows)


def test_arms_of_different_shape_are_refused():
    y, p = _arms(np.random.default_rng(6))
    with pytest.raises(ValueError, match="differ in seeds or rows"):
        paired_difference(y, p, p[:3], 2, "accuracy")


def test_holm_against_hand_computation():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 over m = 4: 4*0.005, 3*0.01, 2*0.03, 1*0.04 -> running max
    expect = np.array([0.03, 0.06, 0.06, np.nan, 0.02])
    np.testing.assert_allclose(holm(p), expect)
    np.testing.assert_allclose(holm(np.array([0.01, 0.9])), [0.02, 0.9])
    np.testing.assert_allclose(holm(np.array([0.6, 0.6])), [1.0, 1.0])
    assert np.isnan(holm(np.array([np.nan]))).all()


def test_holm_rejects_exactly_what_step_down_rejects():
    rng = np.random.default_rng(6)
    for _ in range(50):
        p = rng.random(8) ** 3
        order = np.argsort(p)
        reject = np.zeros(8, bool)
        for i, j in enumerate(order):  # textbook step-down
            if p[j] > 0.05 / (8 - i):
                break
            reject[j] = True
        assert np.array_equal(holm(p) < 0.05, reject)


def test_power_formula():
    z = 1.959964 + 0.841621
    assert min_detectable_effect(0.01, 0.0, 4) == pytest.approx(z * 0.005, rel=1e-5)
    assert min_detectable_effect(0.0, 1e-4, 99) == pytest.approx(z * 0.01, rel=1e-5)
    n = seeds_needed(0.01, 0.01, 1e-6)
    assert min_detectable_effect(0.01, 1e-6, n) <= 0.01 < min_detectable_effect(0.01, 1e-6, n - 1)
    assert seeds_needed(0.01, 0.01, 1e-4) is None  # the eval set alone is too noisy
