"""Paired bootstrap, Holm and power against hand computations and known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dataselect.metrics import METRICS, classification_metrics
from dataselect.stats import (
    arm_counts,
    arm_metric,
    holm,
    min_detectable_effect,
    paired_bootstrap,
    row_weights,
    seed_draws,
    seeds_needed,
)

M, S, B = 872, 5, 2000


def _arms(rng: np.random.Generator, k: int = 2, acc: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, k, M)
    wrong = (y[None, :] + rng.integers(1, k, (S, M))) % k
    return y, np.where(rng.random((S, M)) < acc, y, wrong)


def _compare(y, pa, pb, metric="accuracy", k=2, seed=0):
    w = row_weights(len(y), B, np.random.default_rng(seed))
    return paired_bootstrap(arm_counts(y, pa, w, k), arm_counts(y, pb, w, k), k, metric,
                            seed_draws=seed_draws(B, len(pa), seed))


def _plus_three_percent(y, pb):
    """Right wherever ``pb`` is right, and on 3 % more rows (per seed)."""
    pa = pb.copy()
    for s in range(len(pb)):
        fix = np.flatnonzero(pb[s] != y)[: int(0.03 * len(y))]
        pa[s, fix] = y[fix]
    return pa


@pytest.mark.parametrize("k", [2, 4])
def test_weighted_counts_reproduce_sklearn_metrics(k):
    y, p = _arms(np.random.default_rng(k), k=k, acc=0.6)
    arm = arm_counts(y, p, row_weights(M, 3, np.random.default_rng(0)), k)
    for metric in METRICS:
        ref = [classification_metrics(y, row, k)[metric] for row in p]
        assert np.allclose(arm_metric(arm, k, metric), ref), metric


def test_resampled_metric_equals_metric_on_duplicated_rows():
    """A multinomial weight w_i is the same as row i appearing w_i times."""
    y, p = _arms(np.random.default_rng(1), k=3, acc=0.7)
    w = row_weights(M, 2, np.random.default_rng(5))
    arm = arm_counts(y, p[:1], w, 3)
    from dataselect.stats import _metric_from_counts

    for b in range(2):
        rows = np.repeat(np.arange(M), w[b].astype(int))
        for metric in METRICS:
            got = _metric_from_counts(arm.boot[0, b], w[b].sum(), 3, metric)
            assert got == pytest.approx(classification_metrics(y[rows], p[0, rows], 3)[metric])


@pytest.mark.parametrize("metric", METRICS)
def test_three_percent_more_right_is_significant(metric):
    y, pb = _arms(np.random.default_rng(2))
    pa = _plus_three_percent(y, pb)
    r = _compare(y, pa, pb, metric)
    assert r.delta > 0.02 and r.ci_low > 0 and r.p_boot < 0.01
    assert r.ci_low <= r.delta <= r.ci_high
    if metric == "accuracy":
        assert r.delta == pytest.approx(int(0.03 * M) / M)


def test_identical_arms_are_not_significant():
    y, p = _arms(np.random.default_rng(3))
    r = _compare(y, p, p.copy())
    assert r.delta == 0 and r.p_boot == 1.0 and r.ci_low == r.ci_high == 0


def test_noisy_equal_arms_are_rarely_significant():
    """Two independent arms of the same quality: the test keeps its level (about 5 % false alarms)."""
    hits = 0
    for i in range(40):
        rng = np.random.default_rng(100 + i)
        y, pa = _arms(rng)
        _, pb = _arms(rng)
        pb = np.where(rng.random((S, M)) < 0.8, y, 1 - y)
        hits += _compare(y, pa, pb, seed=i).p_boot < 0.05
    assert hits <= 6  # binomial(40, 0.05): P(> 6) < 0.5 %


def test_interval_contains_point_estimate_and_is_seeded():
    rng = np.random.default_rng(4)
    y, pb = _arms(rng)
    pa = np.where(rng.random((S, M)) < 0.5, _plus_three_percent(y, pb), pb)
    a, b = _compare(y, pa, pb, seed=7), _compare(y, pa, pb, seed=7)
    assert a == b
    assert a.ci_low <= a.delta <= a.ci_high
    assert _compare(y, pa, pb, seed=8).ci_low != a.ci_low


def test_seed_spread_widens_the_interval():
    """Arms that differ a lot between seeds but not on average get a wide interval."""
    y, pb = _arms(np.random.default_rng(5))
    better = _plus_three_percent(y, pb)
    worse = pb.copy()
    for s in range(S):
        hit = np.flatnonzero(pb[s] == y)[: int(0.03 * M)]
        worse[s, hit] = 1 - y[hit]
    swing = np.stack([better[s] if s % 2 else worse[s] for s in range(S)])
    r = _compare(y, swing, pb)
    assert r.ci_low < 0 < r.ci_high and r.p_boot > 0.05
    assert r.sd_seed > 0.02 and r.se > math.sqrt(r.var_rows)


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
