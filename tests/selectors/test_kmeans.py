"""k-means selector: exact proportional allocation, centroid picks, clear errors."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from dataselect.selectors import InvalidParameterError, get_selector
from dataselect.selectors.kmeans import fit_kmeans


def _hamilton(sizes: list[int], budget: int) -> list[int]:
    """Largest-remainder apportionment with exact fractions, ties to the lower index."""
    n = sum(sizes)
    quotas = [Fraction(budget * s, n) for s in sizes]
    shares = [int(q) for q in quotas]
    order = sorted(range(len(sizes)), key=lambda j: (-(quotas[j] - shares[j]), j))
    for j in order[: budget - sum(shares)]:
        shares[j] += 1
    return shares


def _refit(features, sel_seed: int, k: int, niter: int = 20):
    # The selector's first draw from default_rng(seed) seeds FAISS.
    faiss_seed = int(np.random.default_rng(sel_seed).integers(2**31 - 1))
    return fit_kmeans(features["embedding"], k, niter, faiss_seed)


@pytest.mark.parametrize("within", ["random", "centroid"])
def test_kmeans_allocation_is_exact_and_proportional(sst2_features, within):
    k, budget, n = 40, 301, len(sst2_features["label"])
    sel = get_selector("kmeans", n_clusters=k, within=within).select(sst2_features, budget, 3)
    _, assign, _ = _refit(sst2_features, 3, k)
    sizes = np.bincount(assign, minlength=k)
    alloc = np.array(sel.info["allocation"])
    assert sel.info["cluster_sizes"] == sizes.tolist()
    assert alloc.sum() == budget == len(np.unique(sel.indices))
    assert alloc.tolist() == _hamilton(sizes.tolist(), budget)
    assert (alloc <= sizes).all() and (alloc >= 0).all()
    assert np.all(np.abs(alloc - budget * sizes / n) < 1)
    np.testing.assert_array_equal(np.bincount(assign[sel.indices], minlength=k), alloc)
    assert sel.info["inertia"] > 0


def test_kmeans_centroid_mode_takes_rows_nearest_each_centroid(sst2_features):
    k = 30
    sel = get_selector("kmeans", n_clusters=k, within="centroid").select(sst2_features, 60, 1)
    centroids, assign, _ = _refit(sst2_features, 1, k)
    x = sst2_features["embedding"].astype(np.float64)
    d = np.linalg.norm(x - centroids.astype(np.float64)[assign], axis=1)
    picked = set(sel.indices.tolist())
    for j, share in enumerate(sel.info["allocation"]):
        members = np.flatnonzero(assign == j)
        chosen = [i for i in members if i in picked]
        assert len(chosen) == share
        if share:
            others = np.setdiff1d(members, chosen)
            # float32 FAISS distances: allow rounding between near-equal rows.
            assert others.size == 0 or d[chosen].max() <= d[others].min() + 1e-4
    if 1 in sel.info["allocation"]:
        j = sel.info["allocation"].index(1)
        members = np.flatnonzero(assign == j)
        assert d[members].min() == pytest.approx(d[[i for i in members if i in picked][0]], abs=1e-4)


def test_kmeans_tiny_allocation_by_hand():
    # Two tight blobs of 30 and 10 rows: budget 8 -> 6 and 2.
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 0.01, (30, 2)), rng.normal(5, 0.01, (10, 2))])
    sel = get_selector("kmeans", n_clusters=2).select({"embedding": x}, 8, 0)
    assert sorted(sel.info["allocation"]) == [2, 6]
    assert (sel.indices < 30).sum() == 6


def test_kmeans_errors():
    x = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(InvalidParameterError, match=r"KMeansSelector\.n_clusters must be <= n=20.*got 21"):
        get_selector("kmeans", n_clusters=21).select({"embedding": x}, 5, 0)
    for bad in ({"n_clusters": 0}, {"n_clusters": 2.5}, {"within": "medoid"}, {"niter": 0}):
        field = next(iter(bad))
        with pytest.raises(InvalidParameterError, match=rf"KMeansSelector\.{field} must be"):
            get_selector("kmeans", **bad)
