"""k-center greedy: equals the textbook loop, within 2x optimum, beats random on SST-2."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest

from dataselect.selectors import InvalidParameterError, get_selector


def _greedy_reference(x: np.ndarray, budget: int, first: list[int]):
    """Textbook farthest-point loop with a dense distance vector per step."""
    picks, scores = [], []
    near = np.full(len(x), np.inf)
    for i in first:
        scores.append(near[i])
        picks.append(i)
        near = np.minimum(near, np.linalg.norm(x - x[i], axis=1))
    while len(picks) < budget:
        masked = near.copy()
        masked[picks] = -1.0
        i = int(masked.argmax())
        scores.append(near[i])
        picks.append(i)
        near = np.minimum(near, np.linalg.norm(x - x[i], axis=1))
    return np.array(picks), np.array(scores), near.max()


def _radius(x: np.ndarray, centres) -> float:
    return np.linalg.norm(x[:, None] - x[None, list(centres)], axis=-1).min(1).max()


@pytest.mark.parametrize("seed", range(6))
def test_kcenter_equals_dense_reference(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 6))
    x[[7, 70, 170]] = x[[3, 30, 130]]  # duplicates: exact zero distances, ties
    for budget in (1, 50, 400):
        sel = get_selector("kcenter").select({"embedding": x}, budget, seed)
        picks, scores, radius = _greedy_reference(x, budget, [int(sel.indices[0])])
        np.testing.assert_array_equal(sel.indices, picks)
        np.testing.assert_allclose(sel.scores, scores, rtol=1e-9, atol=1e-9)
        assert sel.info["radius"] == pytest.approx(radius, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_kcenter_within_twice_brute_force_optimum(seed):
    x = np.random.default_rng(seed).normal(size=(10, 3))
    sel = get_selector("kcenter").select({"embedding": x}, budget=3, seed=seed)
    best = min(_radius(x, c) for c in itertools.combinations(range(10), 3))
    assert len(set(sel.indices.tolist())) == 3
    assert _radius(x, sel.indices) <= 2 * best + 1e-12
    assert sel.info["radius"] == pytest.approx(_radius(x, sel.indices))


def test_kcenter_initial_and_cosine():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)) + 3.0
    sel = get_selector("kcenter", initial=[5, 9]).select({"embedding": x}, 40, 0)
    picks, scores, radius = _greedy_reference(x, 40, [5, 9])
    np.testing.assert_array_equal(sel.indices, picks)
    assert sel.scores[0] == np.inf
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = get_selector("kcenter", metric="cosine", initial=[5]).select({"embedding": x}, 40, 0)
    picks, scores, radius = _greedy_reference(unit, 40, [5])
    np.testing.assert_array_equal(cos.indices, picks)
    np.testing.assert_allclose(cos.scores[1:], scores[1:] ** 2 / 2, rtol=1e-9)
    assert cos.info["radius"] == pytest.approx(radius**2 / 2)


def test_kcenter_initial_errors():
    x = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(InvalidParameterError, match=r"KCenterGreedy\.initial.*< n=20"):
        get_selector("kcenter", initial=[25]).select({"embedding": x}, 3, 0)
    with pytest.raises(InvalidParameterError, match=r"KCenterGreedy\.initial.*budget=2"):
        get_selector("kcenter", initial=[1, 2, 3]).select({"embedding": x}, 2, 0)
    with pytest.raises(InvalidParameterError, match=r"KCenterGreedy\.initial.*duplicates"):
        get_selector("kcenter", initial=[1, 1])
    with pytest.raises(InvalidParameterError, match=r"KCenterGreedy\.metric"):
        get_selector("kcenter", metric="manhattan")


def test_kcenter_memory_is_linear_in_n():
    n, budget = 8000, 400
    x = np.random.default_rng(0).normal(size=(n, 16))
    tracemalloc.start()
    get_selector("kcenter").select({"embedding": x}, budget, 0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # A dense budget x n float64 distance matrix would be 25.6 MB; the O(n) bounds,
    # heap and 8 MB scratch block stay well below it.
    assert peak < 0.5 * n * budget * 8, f"peak {peak / 1e6:.1f} MB"


def _cover_radius(x: np.ndarray, centres: np.ndarray) -> float:
    """Covering radius via the Gram expansion (n x budget, not n x budget x d)."""
    sq = np.einsum("ij,ij->i", x, x)
    d2 = sq[:, None] + sq[None, centres] - 2 * x @ x[centres].T
    return float(np.sqrt(np.maximum(d2, 0).min(axis=1).max()))


def test_kcenter_radius_beats_random_on_sst2(sst2_features):
    x = sst2_features["embedding"].astype(np.float64)
    budget = len(x) // 10
    sel = get_selector("kcenter").select(sst2_features, budget, 0)
    kc = _cover_radius(x, sel.indices)
    assert sel.info["radius"] == pytest.approx(kc, rel=1e-5)
    rand = [
        _cover_radius(x, get_selector("random").select(sst2_features, budget, s).indices)
        for s in range(5)
    ]
    # Measured on the cached 3000-row sample (384-d MiniLM, budget 300): k-center 7.35,
    # random 8.08..8.28 over 5 seeds, ratio 0.90 to their mean. In 384-d the covering
    # radius falls slowly with the budget; the gap is still ~5x the seed-to-seed spread.
    assert kc < 0.93 * min(rand), (kc, rand)
    assert max(rand) - min(rand) < (min(rand) - kc) / 2
