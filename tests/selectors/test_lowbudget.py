"""Low-budget selectors (typiclust, probcover, ccs, d2) against hand-worked
answers and dense numpy references on tiny synthetic data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dataselect.core.errors import DataError
from dataselect.selectors import InvalidParameterError, get_selector
from dataselect.selectors.ccs import ccs_allocation
from dataselect.selectors.crossfit import crossfit_proba
from dataselect.selectors.difficulty import PREPARED
from dataselect.selectors.kmeans import kmeans_parallel_init
from dataselect.selectors.neighbours import knn_table

SMALL_HEAD = {"hidden": 4, "epochs": 2, "n_runs": 1}


def _dense(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))


def _blobs(sizes, dim=8, spread=100.0, seed=0):
    """Gaussian blobs (unit std) centred ``spread * sqrt(2)`` apart, and their ids."""
    rng = np.random.default_rng(seed)
    centres = spread * np.eye(dim)[: len(sizes)]
    x = np.concatenate([c + rng.normal(size=(s, dim)) for c, s in zip(centres, sizes, strict=True)])
    return x.astype(np.float32), np.repeat(np.arange(len(sizes)), sizes), centres


def _toy(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x, blob, _ = _blobs([n // 3, n // 3, n - 2 * (n // 3)], dim=4, spread=8.0, seed=seed)
    return {"embedding": x, "label": (blob + (rng.random(n) < 0.2)) % 2,
            "hard": rng.random(n)}


# ---------------------------------------------------------------- helpers


def test_knn_table_matches_dense_argsort_and_never_lists_the_row_itself():
    x = np.random.default_rng(3).normal(size=(40, 5)).astype(np.float32)
    x = np.vstack([x, x[:4]])  # exact duplicates: the copy must be listed, not the row
    nbr, dist = knn_table(x, 6, memo=False)
    d = _dense(x)
    np.fill_diagonal(d, np.inf)
    assert (nbr != np.arange(len(x))[:, None]).all()
    np.testing.assert_allclose(dist, np.sort(d, axis=1)[:, :6], atol=1e-12)
    np.testing.assert_allclose(dist, np.take_along_axis(d, nbr, axis=1), rtol=1e-15)
    assert knn_table(x[:3], 10, memo=False)[0].shape == (3, 2)  # capped at n - 1


@pytest.mark.parametrize("seed", range(5))
def test_kmeans_parallel_init_puts_one_centre_in_each_far_blob(seed):
    # A random sample of rows (FAISS's start) misses a blob in most draws at k = 6.
    x, blob, centres = _blobs([20] * 6, seed=seed)
    init = kmeans_parallel_init(x, 6, np.random.default_rng(seed))
    nearest = np.linalg.norm(init[:, None] - centres[None], axis=-1).argmin(axis=1)
    assert sorted(nearest.tolist()) == list(range(6))


# ---------------------------------------------------------------- typiclust


def _typiclust_reference(x, part, order, n_neighbors=20):
    """Dense TypiClust given the partition and the cluster visiting order."""
    d = _dense(x)
    left = {c: list(np.flatnonzero(part == c)) for c in set(part.tolist())}
    picks = []
    for c in order:
        rows = np.array(left[c])
        k = min(n_neighbors, len(rows) // 2)
        sub = d[np.ix_(rows, rows)]
        np.fill_diagonal(sub, np.inf)
        mean = np.sort(sub, axis=1)[:, :k].mean(axis=1)
        i = int(rows[int(mean.argmin())])
        picks.append(i)
        left[c].remove(i)
    return picks


@pytest.mark.parametrize("seed", range(4))
def test_typiclust_one_typical_row_per_blob_and_no_outlier(seed):
    sizes = [34, 31, 28, 25, 22]
    x, blob, centres = _blobs(sizes, seed=seed)
    rng = np.random.default_rng(100 + seed)
    # Far from every other row, but nearer their own blob than any other blob.
    outliers = centres[:3] + 15 * rng.normal(size=(3, 8)) / np.sqrt(8)
    x = np.vstack([x, outliers.astype(np.float32)])
    part = np.concatenate([blob, [0, 1, 2]])
    sel = get_selector("typiclust").select({"embedding": x}, 5, seed)
    assert sel.indices.tolist() == _typiclust_reference(x, part, [0, 1, 2, 3, 4])
    assert not set(sel.indices.tolist()) & {len(x) - 3, len(x) - 2, len(x) - 1}
    assert sel.info["n_clusters"] == 5 and sel.info["allocation"].count(1) == 5
    again = get_selector("typiclust").select({"embedding": x}, 5, seed)
    np.testing.assert_array_equal(sel.indices, again.indices)
    np.testing.assert_array_equal(sel.scores, again.scores)


def test_typiclust_round_robin_largest_first_and_small_clusters_last():
    x, blob, _ = _blobs([40, 30, 20, 3], seed=7)
    sel = get_selector("typiclust", max_clusters=4).select({"embedding": x}, 8, 0)
    # Rounds visit the usable clusters largest first; the 3-row cluster (< 5) never.
    order = [0, 1, 2, 0, 1, 2, 0, 1]
    assert blob[sel.indices].tolist() == order
    assert sel.indices.tolist() == _typiclust_reference(x, blob, order)
    assert sel.info["usable_clusters"] == 3 and sel.info["rows_in_small_clusters"] == 3
    # Past the usable rows, the small cluster fills the budget.
    full = get_selector("typiclust", max_clusters=4).select({"embedding": x}, 93, 0)
    assert blob[full.indices[-3:]].tolist() == [3, 3, 3]
    assert len(np.unique(full.indices)) == 93


# ---------------------------------------------------------------- probcover


def _greedy_reference(d, delta, budget):
    cover = d < delta
    uncovered = np.ones(len(d), dtype=bool)
    picks = []
    while len(picks) < budget and uncovered.any():
        gain = cover[:, uncovered].sum(axis=1)
        i = int(gain.argmax())
        picks.append(i)
        uncovered &= ~cover[i]
    return picks, 1 - uncovered.mean()


@pytest.mark.parametrize("seed", range(5))
def test_probcover_greedy_matches_brute_force_max_coverage(seed):
    x = np.random.default_rng(seed).normal(size=(30, 2))
    d = _dense(x)
    delta = float(np.quantile(d[d > 0], 0.08))
    sel = get_selector("probcover", delta=delta).select({"embedding": x}, 12, seed)
    ref, covered = _greedy_reference(d, delta, 12)
    assert sel.indices[: len(ref)].tolist() == ref
    assert sel.info["n_greedy"] == len(ref) and sel.info["purity"] is None
    assert sel.info["covered_fraction"] == pytest.approx(covered)
    np.testing.assert_array_equal(sel.scores[: len(ref)],
                                  np.diff(np.concatenate([[0], _cum_cover(d < delta, ref)])))
    assert len(np.unique(sel.indices)) == 12


def _cum_cover(cover, picks):
    return np.array([cover[picks[: t + 1]].any(axis=0).sum() for t in range(len(picks))])


def test_probcover_delta_rule_on_known_clusters():
    x, blob, _ = _blobs([10, 10, 10], dim=3, spread=20.0, seed=1)
    d = _dense(x)
    sel = get_selector("probcover", n_clusters=3).select({"embedding": x}, 3, 0)
    # k-means recovers the blobs; r_i = distance to the nearest row of another blob.
    r = np.where(blob[:, None] != blob[None, :], d, np.inf).min(axis=1)
    want = np.sort(r)[::-1][math.ceil(0.95 * 30) - 1]
    assert sel.info["delta"] == pytest.approx(want, rel=1e-12)
    pure = lambda delta: np.mean(r >= delta)  # noqa: E731
    # Largest such delta (1e-9: our float64 distances and these may differ in the last bit).
    assert pure(sel.info["delta"] * (1 - 1e-9)) >= 0.95 > pure(sel.info["delta"] * (1 + 1e-9))
    assert sel.info["purity"] >= 0.95
    # Balls that large swallow whole blobs: three picks, one per blob, cover everything.
    assert sorted(blob[sel.indices].tolist()) == [0, 1, 2]
    assert sel.info["covered_fraction"] == 1.0


def test_probcover_truncated_balls_count_as_impure():
    x, _, _ = _blobs([40, 40], dim=3, spread=20.0, seed=2)
    sel = get_selector("probcover", n_clusters=2, max_degree=6).select({"embedding": x}, 10, 0)
    nbr, dist = knn_table(x, 5, memo=False)
    # Every ball is pure (two far blobs), so the cap alone sets delta.
    assert sel.info["delta"] == pytest.approx(np.sort(dist[:, -1])[::-1][math.ceil(0.95 * 80) - 1])
    assert sel.info["capped_fraction"] <= 0.05 + 1e-12


@pytest.mark.parametrize("seed", range(3))
def test_probcover_covers_at_least_as_much_as_random_at_the_same_delta(seed):
    x, _, _ = _blobs([60, 50, 40, 30, 20], dim=6, spread=10.0, seed=seed)
    d = _dense(x)
    budget = 15
    sel = get_selector("probcover", n_clusters=5, max_degree=256).select({"embedding": x}, budget, seed)
    cover = d < sel.info["delta"]
    ours = cover[sel.indices].any(axis=0).mean()
    assert ours == pytest.approx(sel.info["covered_fraction"]) or sel.info["n_random_fill"] > 0
    rng = np.random.default_rng(seed)
    random_cov = [cover[rng.choice(len(x), budget, replace=False)].any(axis=0).mean()
                  for _ in range(30)]
    assert ours >= max(random_cov)


# ---------------------------------------------------------------- ccs

# Hand-worked: strata of width 1 over [0, 4] hold 2, 1, 6 and 9 rows; the two
# rows scored 10 and 11 are the hardest 10 % of 20 and are pruned first.
_CCS_SCORES = np.array([0.0, 0.5, 1.5, 2.1, 2.2, 2.3, 2.5, 2.7, 2.9,
                        3.1, 3.2, 3.3, 3.4, 3.5, 3.6, 3.7, 3.9, 4.0, 10.0, 11.0])
_CCS_STRATUM = np.array([0, 0, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, -1, -1])


@pytest.mark.parametrize(("budget", "alloc"), [
    # fewest first: stratum 1 min(1, 10 // 4) = 1; stratum 0 min(2, 9 // 3) = 2;
    # stratum 2 min(6, 7 // 2) = 3; stratum 3 takes the 4 left.
    (10, [2, 1, 3, 4]),
    # 1 = min(1, 7 // 4); 2 = min(2, 6 // 3); 2 = min(6, 4 // 2); 2 left.
    (7, [2, 1, 2, 2]),
    # everything kept: every stratum whole.
    (18, [2, 1, 6, 9]),
])
@pytest.mark.parametrize("seed", range(3))
def test_ccs_hand_worked_strata(budget, alloc, seed):
    f = {"d": _CCS_SCORES}
    sel = get_selector("ccs", score="column:d", beta=0.1, n_strata=4).select(f, budget, seed)
    assert sel.info["strata_sizes"] == [2, 1, 6, 9] and sel.info["n_pruned"] == 2
    assert sel.info["allocation"] == alloc
    assert np.bincount(_CCS_STRATUM[sel.indices], minlength=4).tolist() == alloc
    assert len(np.unique(sel.indices)) == budget
    assert not {18, 19} & set(sel.indices.tolist())
    np.testing.assert_array_equal(sel.scores, _CCS_SCORES[sel.indices])


def test_ccs_samples_uniformly_inside_a_stratum():
    f = {"d": _CCS_SCORES}
    draws = [get_selector("ccs", score="column:d", beta=0.1, n_strata=4).select(f, 10, s).indices
             for s in range(40)]
    hits = np.bincount(np.concatenate(draws), minlength=20)
    # Stratum 3 gets 4 of its 9 rows per draw: every row shows up, none always.
    assert (hits[9:18] > 0).all() and (hits[9:18] < 40).all()
    assert hits[:3].tolist() == [40, 40, 40] and hits[18:].tolist() == [0, 0]


@pytest.mark.parametrize("budget", [1, 20, 100, 140, 170, 200])
def test_ccs_never_keeps_the_pruned_hardest_rows_and_fills_the_budget(budget):
    d = np.random.default_rng(budget).permutation(200).astype(float)  # distinct scores
    sel = get_selector("ccs", score="column:d", beta=0.3, n_strata=7).select({"d": d}, budget, 0)
    n_pruned = min(60, 200 - budget)
    assert sel.info["n_pruned"] == n_pruned
    assert len(np.unique(sel.indices)) == budget
    assert d[sel.indices].max(initial=-1) < 200 - n_pruned  # the hardest n_pruned are 199, 198, ...


def _algorithm1(sizes, m):
    """Zheng et al. (2023), Algorithm 1, transcribed on a dict of strata."""
    left, take = dict(enumerate(sizes)), [0] * len(sizes)
    while left:
        j = min(left, key=lambda b: (left[b], b))
        take[j] = min(left[j], m // len(left))
        m -= take[j]
        del left[j]
    return take


@pytest.mark.parametrize("seed", range(20))
def test_ccs_allocation_is_algorithm_1(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 30, size=rng.integers(1, 12))
    sizes[rng.random(len(sizes)) < 0.2] = 0
    for budget in range(0, int(sizes.sum()) + 1, 3):
        alloc = ccs_allocation(sizes, budget)
        assert alloc.tolist() == _algorithm1(sizes.tolist(), budget)
        assert alloc.sum() == budget and (alloc <= sizes).all()


def test_ccs_el2n_reuses_the_el2n_selector_scores():
    f = _toy(n=90)
    el2n = get_selector("el2n", **SMALL_HEAD).select(f, 90, 5)
    by_row = np.empty(90)
    by_row[el2n.indices] = el2n.scores
    sel = get_selector("ccs", score="el2n", score_params=SMALL_HEAD, beta=0.0).select(f, 30, 5)
    np.testing.assert_array_equal(sel.scores, by_row[sel.indices])


def test_margin_and_forgetting_difficulty():
    f = _toy(n=90)
    sel = get_selector("ccs", score="margin", beta=0.0, n_strata=1).select(f, 90, 3)
    fold_seed = int(np.random.default_rng(3).integers(2**31 - 1))
    y = f["label"].astype(np.int64)
    proba, _ = crossfit_proba(f["embedding"], y, n_folds=5, seed=fold_seed, n_classes=2)
    margin = proba[np.arange(90), y] - proba[np.arange(90), 1 - y]
    np.testing.assert_allclose(sel.scores, 1 - margin[sel.indices])
    # Never-learned rows (inf) become the hardest finite value, so they are pruned first.
    forget = get_selector("d2", score="forgetting", score_params={"hidden": 0, "epochs": 2, "lr": 1e-6},
                          per_class="none")
    out = forget.select(f, 20, 0)
    assert np.isfinite(out.scores).all() and out.info["score"] == "forgetting"


# ---------------------------------------------------------------- d2

_BARE = {"beta": 0.0, "per_class": "none"}  # the algorithm alone, no pruning, one graph
SMALL_FORGET = {"hidden": 4, "epochs": 3}


def _d2_reference(x, s, budget, k, gamma_f, gamma_r):
    d = _dense(x)
    off = d + np.diag(np.full(len(x), np.inf))
    knn = np.zeros_like(d, dtype=bool)
    knn[np.repeat(np.arange(len(x)), k), np.argsort(off, axis=1)[:, :k].ravel()] = True
    adj = knn | knn.T
    cur = s + (adj * np.exp(-gamma_f * d)) @ s
    picks, scores = [], []
    for _ in range(budget):
        i = int(np.argmax(np.where(np.isin(np.arange(len(x)), picks), -np.inf, cur)))
        picks.append(i)
        scores.append(cur[i])
        cur = cur - adj[i] * np.exp(-gamma_r * d[i]) * cur[i]
    return picks, scores


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("k", "gamma_f", "gamma_r"), [(4, 0.7, 0.3), (10, 1.0, 0.1), (2, 0.5, 2.0)])
def test_d2_matches_dense_reference(seed, k, gamma_f, gamma_r):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 3))
    s = rng.random(40)
    sel = get_selector("d2", score="column:s", n_neighbors=k, gamma_f=gamma_f, gamma_r=gamma_r,
                       **_BARE).select({"embedding": x, "s": s}, 15, 0)
    picks, scores = _d2_reference(x, s, 15, k, gamma_f, gamma_r)
    assert sel.indices.tolist() == picks
    np.testing.assert_allclose(sel.scores, scores, rtol=1e-10)


def test_d2_prunes_hardest_first_and_needs_non_negative_difficulty():
    f = _toy()
    sel = get_selector("d2", score="column:hard", prune_score=None, beta=0.5, per_class="none").select(f, 10, 0)
    assert f["hard"][sel.indices].max() <= np.sort(f["hard"])[29]
    f["hard"][4] = -0.1
    with pytest.raises(DataError, match=r"D2 needs non-negative difficulty.*first at row 4"):
        get_selector("d2", score="column:hard", **_BARE).select(f, 10, 0)


# ---------------------------------------------------------------- all four

_ALL = [("typiclust", {}), ("probcover", {}), ("ccs", {"score": "column:hard"}),
        ("d2", {"score": "column:hard", "beta": 0.0}), ("ccs", {"score": "el2n", "score_params": SMALL_HEAD}),
        ("d2", {"score": "margin", "beta": 0.1}), ("ccs", {}), ("d2", {"score_params": SMALL_FORGET})]


@pytest.mark.parametrize(("name", "params"), _ALL)
@pytest.mark.parametrize("budget", [1, 7, 60])
def test_budget_filled_exactly_without_duplicates_and_deterministic(name, params, budget):
    f = _toy()
    a = get_selector(name, **params).select(f, budget, 11)
    b = get_selector(name, **params).select(f, budget, 11)
    assert len(a.indices) == budget == len(np.unique(a.indices))
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.info == b.info
    json.dumps(a.info, allow_nan=False)
    json.dumps(get_selector(name, **params).params(), allow_nan=False)


@pytest.mark.parametrize(("name", "params"), _ALL[:4])
@pytest.mark.parametrize("per_class", ["proportional", "balanced"])
def test_per_class_picks_global_rows_by_class_share(name, params, per_class):
    f = _toy(n=90)
    sel = get_selector(name, per_class=per_class, **params).select(f, 21, 2)
    assert len(np.unique(sel.indices)) == 21
    counts = np.bincount(f["label"][sel.indices], minlength=2)
    assert counts.tolist() == [sel.info["allocation"]["0"], sel.info["allocation"]["1"]]
    again = get_selector(name, per_class=per_class, **params).select(f, 21, 2)
    np.testing.assert_array_equal(sel.indices, again.indices)


@pytest.mark.parametrize(("name", "params", "message"), [
    ("typiclust", {"n_neighbors": 0}, r"TypiClust\.n_neighbors must be an int >= 1; got 0"),
    ("typiclust", {"metric": "l1"}, r"TypiClust\.metric must be 'euclidean' or 'cosine'"),
    ("probcover", {"alpha": 0.0}, r"ProbCover\.alpha must be a number in \(0, 1\]"),
    ("probcover", {"delta": -1.0}, r"ProbCover\.delta must be None or a number > 0"),
    ("ccs", {"score": "aum"}, r"CCS\.score must be one of \['el2n', 'forgetting', 'margin', 'column:<name>'\]"),
    ("ccs", {"score": "column:"}, r"CCS\.score must be one of"),
    ("ccs", {"beta": 1.0}, r"CCS\.beta must be a number in \[0, 1\)"),
    ("ccs", {"score": "column:d", "score_params": {"hidden": 3}}, r"CCS\.score_params must be empty"),
    ("ccs", {"score": "el2n", "score_params": {"hiden": 3}},
     r"CCS\.score_params: EL2N has no parameter\(s\) \['hiden'\]"),
    ("ccs", {"score": "el2n", "score_params": {"epochs": 0}}, r"CCS\.score_params: EL2N\.epochs must be an int >= 1"),
    ("d2", {"prune_score": "aum"}, r"D2\.prune_score must be one of"),
    ("d2", {"prune_score_params": {"n_folds": 1}}, r"D2\.prune_score_params\.n_folds must be"),
    ("d2", {"prune_score": None, "prune_score_params": {"C": 2.0}}, r"D2\.prune_score_params must be empty"),
    ("d2", {"score": "margin", "score_params": {"n_folds": 1}}, r"D2\.score_params\.n_folds must be"),
    ("d2", {"gamma_r": -1}, r"D2\.gamma_r must be a number >= 0"),
])
def test_bad_parameters_name_owner_field_and_value(name, params, message):
    with pytest.raises(InvalidParameterError, match=message):
        get_selector(name, **params)


def test_params_report_resolved_scorer_defaults_and_required_columns():
    p = get_selector("ccs", score="el2n").params()
    assert p["score_params"]["n_runs"] == 5 and "keep" not in p["score_params"]
    assert get_selector("ccs").params()["score_params"] == {"n_folds": 5, "C": 1.0}
    assert get_selector("ccs", score="column:d").required() == ("d",)
    assert get_selector("d2", score="column:d", beta=0.0).inner.required() == ("embedding", "d")
    assert get_selector("d2", score="column:d").inner.required() == ("embedding", "d", "label")  # margin pruning
    assert get_selector("d2").required() == ("embedding", "label")
    assert get_selector("probcover").required() == ("embedding", "label")
    assert get_selector("probcover", n_clusters=4).required() == ("embedding",)
    assert get_selector("d2", score="column:d", beta=0.0).seeded is False
    assert get_selector("d2").seeded is True


# ---------------------------------------------------------------- the authors' recipes; per-class scoring


def test_d2_defaults_are_the_authors_cifar_recipe():
    """adymaharana/d2pruning README: --coreset-key forgetting --mis-ratio 0.4 (mis-key AUM)
    --n-neighbor 5 --gamma 0.1 --coreset-mode class --label-balanced."""
    sel = get_selector("d2")
    p = sel.params()
    assert (p["score"], p["prune_score"], p["beta"], p["n_neighbors"], p["gamma_f"], p["gamma_r"],
            p["per_class"]) == ("forgetting", "margin", 0.4, 5, 1.0, 0.1, "balanced")
    assert p["prune_score_params"] == {"n_folds": 5, "C": 1.0}
    assert get_selector("d2", per_class="none").params()["per_class"] == "none"  # the bare algorithm on request


def test_ccs_defaults_are_the_authors_recipe_at_90_percent_pruning():
    """haizhongzheng/Coverage-centric-coreset-selection README: --coreset-key accumulated_margin
    --mis-ratio 0.3 at coreset ratio 0.1, 50 strata."""
    p = get_selector("ccs").params()
    assert (p["score"], p["beta"], p["n_strata"], p["per_class"]) == ("margin", 0.3, 50, "none")


def _pool_columns(name, params, f, budget, seed):
    """What PerClass computes on the whole pool: the inner selector's prepare, same generator."""
    sel = get_selector(name, per_class="balanced", **params)
    rng = np.random.default_rng(seed)
    prep = np.random.default_rng(rng.integers(0, 2**63 - 1))
    return sel.inner.prepare(f, len(f["label"]), budget, prep)


def test_d2_recipe_prunes_by_pool_margin_and_balances_classes():
    f = _toy(n=120)
    sel = get_selector("d2", score_params=SMALL_FORGET).select(f, 20, 3)
    cols = _pool_columns("d2", {"score_params": SMALL_FORGET}, f, 20, 3)
    pruned = cols[PREPARED[2]]
    assert pruned.sum() == 48  # 40 % of the pool, chosen on the whole pool
    assert not pruned[sel.indices].any()  # no pruned row is ever picked
    # the pruned rows are the hardest by the pool's out-of-fold margin
    margin = cols[PREPARED[1]]
    assert margin[pruned].min() >= margin[~pruned].max()
    assert np.bincount(f["label"][sel.indices], minlength=2).tolist() == [10, 10]
    assert set(sel.info["classes"]["0"]) >= {"n_pruned", "scored_on"}


@pytest.mark.parametrize(("name", "params"), [
    ("ccs", {}),  # margins: a classifier cannot be cross-fitted inside one class
    ("ccs", {"score": "el2n", "score_params": {"hidden": 4, "epochs": 2, "n_runs": 1}}),
    ("d2", {"score_params": SMALL_FORGET}),
])
def test_per_class_scores_come_from_the_whole_pool(name, params):
    """Inside each class the scores are the pool's (the same numbers a pool-wide run computes),
    not a head trained on one class -- which used to raise, one class having nothing to tell apart."""
    f = _toy(n=120)
    sel = get_selector(name, per_class="balanced", **params).select(f, 24, 5)
    cols = _pool_columns(name, params, f, 24, 5)
    assert np.bincount(f["label"][sel.indices], minlength=2).tolist() == [12, 12]
    if name == "ccs":  # CCS's scores are each pick's difficulty
        np.testing.assert_array_equal(sel.scores, cols[PREPARED[0]][sel.indices])


@pytest.mark.parametrize("name", ["el2n", "forgetting", "grand"])
def test_importance_per_class_ranks_the_pool_scores_inside_each_class(name):
    params = {"hidden": 4, "epochs": 3} | ({"n_runs": 1} if name == "el2n" else {}) | (
        {"n_inits": 1} if name == "grand" else {})
    params.pop("epochs") if name == "grand" else None
    f = _toy(n=120)
    sel = get_selector(name, per_class="proportional", **params).select(f, 30, 2)
    cols = _pool_columns(name, params, f, 30, 2)
    score = cols["_pool_score"]
    for c in (0, 1):
        rows = np.flatnonzero(f["label"] == c)
        mine = sel.indices[f["label"][sel.indices] == c]
        # the class's picks are its highest pool scores (ties broken by the pool's order)
        assert set(mine) == set(rows[np.lexsort((cols["_pool_tiebreak"][rows], -score[rows]))[:len(mine)]])


def test_a_class_short_of_unpruned_rows_takes_back_its_least_hard():
    """Pool pruning can leave a class fewer rows than its balanced share; it keeps its share."""
    rng = np.random.default_rng(0)
    label = np.r_[np.zeros(50, int), np.ones(50, int)]
    hard = np.r_[rng.uniform(0.6, 1.0, 50), rng.uniform(0.0, 0.4, 50)]  # class 0 is all hard
    f = {"embedding": rng.normal(size=(100, 3)), "label": label, "hard": hard}
    sel = get_selector("ccs", score="column:hard", beta=0.45, n_strata=3, per_class="balanced").select(f, 20, 0)
    assert np.bincount(label[sel.indices], minlength=2).tolist() == [10, 10]
    zero = sel.indices[label[sel.indices] == 0]
    # 45 of class 0's 50 rows were pruned: its 5 unpruned + the 5 least hard pruned
    assert set(zero) == set(np.flatnonzero(label == 0)[np.argsort(hard[:50])[:10]])
