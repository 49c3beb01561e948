"""Partitioned selection (issue 17): exact budgets and class shares, determinism,
and quality against the exact (unpartitioned) selector on clustered data."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from dataselect.selectors import InvalidParameterError, get_selector
from dataselect.selectors.partitioned import (
    PARTITIONABLE,
    Partitioned,
    chain_order,
    herding_targets,
    resolve_partitions,
)
from dataselect.selectors.partitioning import (
    assign_partitions,
    auto_partitions,
    balance_offsets,
    fit_partitions,
    plan_partitions,
    split_budget,
)
from dataselect.selectors.stratify import balanced_shares, class_shares


def blobs(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` Gaussian blobs (centres N(0, 9) per dim, unit noise), float32; labels
    follow the blob (parity) with 10 % flipped, so classes are neither separable
    nor balanced within a blob."""
    rng = np.random.default_rng(seed)
    centres = 3 * rng.normal(size=(k, d)).astype(np.float32)
    blob = rng.integers(0, k, n)
    x = centres[blob] + rng.normal(size=(n, d)).astype(np.float32)
    y = ((blob % 3 == 0) ^ (rng.random(n) < 0.1)).astype(np.int64)  # ~1/3 vs 2/3
    return x, y


@pytest.fixture(scope="module")
def pool() -> dict[str, np.ndarray]:
    x, y = blobs(6000, 16, 30, 0)
    return {"embedding": x, "label": y}


def _radius(x: np.ndarray, picks: np.ndarray) -> float:
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(np.ascontiguousarray(x[picks]))
    d2, _ = index.search(np.ascontiguousarray(x), 1)
    return float(np.sqrt(max(d2.max(), 0.0)))


def _gap(x: np.ndarray, picks: np.ndarray) -> float:
    return float(np.linalg.norm(x[picks].mean(0, dtype=np.float64) - x.mean(0, dtype=np.float64)))


# --------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", PARTITIONABLE)
@pytest.mark.parametrize("per_class", ["none", "proportional"])
def test_deterministic_for_a_seed_and_fills_budget(pool, name, per_class):
    sel = get_selector(name, partitions=4, per_class=per_class)
    a = sel.select(pool, 137, seed=3)
    b = get_selector(name, partitions=4, per_class=per_class).select(pool, 137, seed=3)
    assert a.indices.tobytes() == b.indices.tobytes()
    assert len(a.indices) == 137 and len(np.unique(a.indices)) == 137
    assert a.indices.min() >= 0 and a.indices.max() < len(pool["label"])
    assert sum(a.info["allocation"]) == 137 and len(a.info["partition_sizes"]) == 4


@pytest.mark.parametrize("budget", [1, 5, 999, 6000])
def test_fills_any_budget_exactly(pool, budget):
    sel = get_selector("kcenter", partitions=5).select(pool, budget, seed=0)
    assert len(sel.indices) == budget and len(np.unique(sel.indices)) == budget


@pytest.mark.parametrize("mode", ["proportional", "balanced"])
@pytest.mark.parametrize("name", ["random", "kcenter", "herding"])
def test_per_class_shares_are_the_global_largest_remainder(pool, mode, name):
    y = pool["label"]
    budget = 301
    sel = get_selector(name, partitions=3, per_class=mode).select(pool, budget, seed=1)
    sizes = np.bincount(y)
    want = class_shares(sizes, budget) if mode == "proportional" else balanced_shares(sizes, budget)
    assert np.bincount(y[sel.indices], minlength=2).tolist() == want.tolist()
    # the same allocation PerClass makes without partitions
    plain = get_selector(name, per_class=mode).select(pool, budget, seed=1)
    assert np.bincount(y[plain.indices], minlength=2).tolist() == want.tolist()


def test_split_budget_by_hand():
    counts = np.array([[6, 0], [3, 3], [1, 7]])  # 3 partitions x 2 classes, classes 10 / 10
    # none: partition sizes 6, 6, 8 of 20 -> 5 * (0.3, 0.3, 0.4) = 1.5, 1.5, 2 -> 2, 1, 2 (tie to lower)
    assert split_budget(counts, 5, "none")[:, 0].tolist() == [2, 1, 2]
    # proportional: 3 + 2 (class 0 gets the remainder); class 0 over 6, 3, 1; class 1 over 0, 3, 7
    got = split_budget(counts, 5, "proportional")
    assert got.sum(0).tolist() == [3, 2] and got[:, 0].tolist() == [2, 1, 0] and got[:, 1].tolist() == [0, 1, 1]
    assert (got <= counts).all()


def test_herding_chain_targets_make_the_merged_mean_exact():
    """If every partition hit its target exactly, the merged mean would be the pool's."""
    rng = np.random.default_rng(0)
    counts = np.array([[5], [9], [4]])
    sums = rng.normal(size=(3, 1, 4)) * counts[..., None]
    shares = split_budget(counts, 4, "none")
    mu = sums.sum(0)[0] / counts.sum()
    done, picked = np.zeros(3, dtype=bool), np.zeros((1, 4))
    for j in chain_order(shares):
        t = herding_targets(sums, counts, shares, picked, done, j)
        miss = rng.normal(size=4) * 0.1  # the partition's own herding error
        picked += shares[j, 0] * (t[0] + miss)
        done[j] = True
    # only the last partition's error is left, not the sum of all
    last = chain_order(shares)[-1]
    np.testing.assert_allclose(picked[0] / 4, mu + shares[last, 0] * miss / 4, atol=1e-12)


def test_assignment_does_not_depend_on_batching(pool):
    x = pool["embedding"]
    c = x[[0, 10, 20, 30]]
    whole = assign_partitions(x, c)
    parts = np.concatenate([assign_partitions(x[lo : lo + 777], c) for lo in range(0, len(x), 777)])
    assert np.array_equal(whole, parts)
    brute = ((x[:, None].astype(np.float64) - c[None].astype(np.float64)) ** 2).sum(-1).argmin(1)
    assert np.array_equal(whole, brute)


@pytest.mark.parametrize("seed", range(4))
def test_balance_offsets_meet_the_cap_and_move_rows_only_out_of_full_cells(seed):
    """Against brute force: every cell ends within ``cap``; a row whose cell
    never had its price raised keeps it (prices only rise)."""
    rng = np.random.default_rng(seed)
    cost = rng.normal(size=(500, 5)) + np.array([-3.0, 0, 0, 0, 1])  # cell 0 is everyone's favourite
    cap = 110
    b = balance_offsets(cost, cap)
    owner = (cost + b).argmin(1)
    assert np.bincount(owner, minlength=5).max() <= cap
    before = cost.argmin(1)
    calm = b[before] == 0
    assert np.array_equal(owner[calm], before[calm]) and b.min() == 0 and b[0] > 0
    with pytest.raises(ValueError, match="cannot fit"):
        balance_offsets(cost, 99)


@pytest.mark.parametrize("seed", [2, 3])
def test_cells_are_even_where_kmeans_cells_are_not(seed):
    """256 blobs in 384-d, P = 4: a k-means centroid averaging many blobs has
    a small norm and wins most rows (one cell held > 70 % of this pool); the
    offsets bring every cell within 1.35x the mean on the whole pool
    (within 1.1x on the sample they were fitted on)."""
    x, _ = blobs(20_000, 384, 256, 0)
    plan = plan_partitions(len(x), 4, 256, np.random.default_rng(seed))
    cells = fit_partitions(x[plan.sample], 4, 20, plan.kmeans_seed)
    plain = np.bincount(assign_partitions(x, cells.centroids), minlength=4)
    even = np.bincount(assign_partitions(x, cells), minlength=4)
    assert plain.max() > 0.7 * len(x)  # the pathology is there
    assert even.max() <= 1.35 * len(x) / 4 and even.sum() == len(x)
    brute = (((x[:, None].astype(np.float64) - cells.centroids[None]) ** 2).sum(-1) + cells.offsets).argmin(1)
    assert np.array_equal(assign_partitions(x, cells), brute)


def test_one_partition_or_auto_on_a_small_pool_is_the_plain_selector(pool):
    plain = get_selector("kcenter")
    assert get_selector("kcenter", partitions=1) == plain
    auto = get_selector("kcenter", partitions="auto")
    assert isinstance(auto, Partitioned) and auto.params()["partitions"] == "auto"
    assert resolve_partitions(auto, 6000, 16, 1 << 30) == plain  # 1.1 MB fits
    assert np.array_equal(auto.select(pool, 50, 2).indices, plain.select(pool, 50, 2).indices)
    four = resolve_partitions(auto, 6000, 16, 6000 * 16 * 4 * 3 / 3.5)
    assert four.params()["partitions"] == 4


def test_auto_partitions_rule():
    assert auto_partitions(2_000_000, 384, 4 * 2**30) == 3  # 3.07 GB x 3 / 4 GiB
    assert auto_partitions(100_000_000, 768, 8 * 2**30) == 108
    assert auto_partitions(1000, 384, 4 * 2**30) == 1


def test_partition_params_enter_the_resolved_params():
    p = get_selector("kmeans", partitions=8, partition_sample=64, per_class="balanced").params()
    assert {k: p[k] for k in ("partitions", "partition_sample", "partition_niter", "per_class")} == {
        "partitions": 8, "partition_sample": 64, "partition_niter": 20, "per_class": "balanced"}
    assert "partitions" not in get_selector("kmeans").params()


def test_errors_name_the_parameter():
    with pytest.raises(InvalidParameterError, match=r"EL2N\.partitions .*'kcenter'"):
        get_selector("el2n", partitions=2)
    with pytest.raises(InvalidParameterError, match=r"KCenterGreedy\.partitions must be 'auto' or an int >= 2; got 0"):
        get_selector("kcenter", partitions=0)
    with pytest.raises(InvalidParameterError, match=r"partition_sample must be an int >= 1"):
        get_selector("kcenter", partitions=2, partition_sample=0)
    with pytest.raises(InvalidParameterError, match="initial"):
        get_selector("kcenter", partitions=2, initial=[0])
    with pytest.raises(InvalidParameterError, match=r"partitions must be <= n=3"):
        get_selector("random", partitions=4).select({"embedding": np.eye(3)}, 2, 0)
    with pytest.warns(UserWarning, match="partition_niter"):
        get_selector("kcenter", partition_niter=3)


# --------------------------------------------------------------------------- quality
def _quality(n: int, d: int, budget: int, n_parts: int, seeds: range) -> None:
    """Issue 17's bounds: k-center radius <= 1.25x, herding gap <= 2x, class shares within 1 point.

    Class shares are compared under ``per_class: proportional``: without it
    neither path controls them, and the exact selectors' own shares move by
    ~2 points from seed to seed here (k-center 34.8-39.0 % at 20k rows; exact
    herding keeps 25 % of a 36 % class), so a 1-point bound would test noise.
    """
    x, y = blobs(n, d, 100, 7)
    feats = {"embedding": x, "label": y}
    exact_herd = get_selector("herding").select(feats, budget, 0)
    for seed in seeds:
        exact = get_selector("kcenter").select(feats, budget, seed)
        part = get_selector("kcenter", partitions=n_parts).select(feats, budget, seed)
        r_exact, r_part = _radius(x, exact.indices), _radius(x, part.indices)
        assert r_part <= 1.25 * r_exact, (seed, r_part, r_exact)
        assert r_part <= part.info["radius_bound"] + 1e-4
        part = get_selector("herding", partitions=n_parts).select(feats, budget, seed)
        assert _gap(x, part.indices) <= 2 * _gap(x, exact_herd.indices), seed
        for name in ("kcenter", "herding", "kmeans", "random"):
            a = get_selector(name, per_class="proportional").select(feats, budget, seed)
            b = get_selector(name, partitions=n_parts, per_class="proportional").select(feats, budget, seed)
            assert abs(y[a.indices].mean() - y[b.indices].mean()) <= 0.01, (name, seed)


def test_quality_against_exact_ci_size():
    _quality(20_000, 32, 400, 4, range(2))


@pytest.mark.slow
def test_quality_against_exact_200k():
    _quality(200_000, 64, 2000, 4, range(2))
