"""Herding: matches the definition on tiny data, tracks the mean far better than random."""

from __future__ import annotations

import numpy as np
import pytest

from dataselect.selectors import get_selector


def _naive_herding(x: np.ndarray, budget: int) -> list[int]:
    """argmin over unchosen x of ||(s + x) / (t + 1) - mu||, evaluated literally."""
    mu = x.mean(axis=0)
    picks: list[int] = []
    for _ in range(budget):
        best, best_gap = -1, np.inf
        for i in range(len(x)):
            if i in picks:
                continue
            gap = np.linalg.norm(x[picks + [i]].mean(axis=0) - mu)
            if gap < best_gap:
                best, best_gap = i, gap
        picks.append(best)
    return picks


@pytest.mark.parametrize("seed", range(4))
def test_herding_equals_naive_definition(seed):
    x = np.random.default_rng(seed).normal(size=(40, 5))
    sel = get_selector("herding").select({"embedding": x}, 15, seed)
    assert sel.indices.tolist() == _naive_herding(x, 15)
    gaps = [np.linalg.norm(x[sel.indices[: t + 1]].mean(0) - x.mean(0)) for t in range(15)]
    np.testing.assert_allclose(sel.scores, gaps, rtol=1e-9, atol=1e-12)
    assert sel.info["mean_gap"] == pytest.approx(gaps[-1])


def test_herding_mean_gap_far_below_random_on_sst2(sst2_features):
    x = sst2_features["embedding"].astype(np.float64)
    mu = x.mean(axis=0)
    budget = len(x) // 10
    sel = get_selector("herding").select(sst2_features, budget, 0)
    gap = np.linalg.norm(x[sel.indices].mean(0) - mu)
    assert sel.info["mean_gap"] == pytest.approx(gap, rel=1e-4)
    rand = np.mean([
        np.linalg.norm(x[get_selector("random").select(sst2_features, budget, s).indices].mean(0) - mu)
        for s in range(5)
    ])
    # Measured on the cached 3000-row sample: gap 0.053 vs random 0.276 (ratio 0.19);
    # d = 384 > budget, so herding is still in its slow early phase here.
    assert gap < 0.3 * rand, (gap, rand)
