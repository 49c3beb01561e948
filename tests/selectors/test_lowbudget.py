"""Low-budget selectors (typiclust, probcover, ccs, d2) against hand-worked
answers and dense numpy references on tiny synthetic data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dataselect.errors import DataError
from dataselect.selectors import InvalidParameterError, get_selector
from dataselect.selectors.crossfit import crossfit_proba
from dataselect.selectors.kmeans import kmeans_plusplus
from dataselect.selectors.neighbours import knn_table
from dataselect.selectors.pruning import ccs_allocation

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
def test_kmeans_plusplus_puts_one_centre_in_each_far_blob(seed):
    # A random sample of rows (FAISS's start) misses a blob in most draws at k = 6.
    x, blob, centres = _blobs([20] * 6, seed=seed)
    init = kmeans_plusplus(x, 6, np.random.default_rng(seed))
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
    draws = [get_selector("ccs", score="column:d", n_strata=4).select(f, 10, s).indices
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


def test_ccs_el2n_default_reuses_the_el2n_selector_scores():
    f = _toy(n=90)
    el2n = get_selector("el2n", **SMALL_HEAD).select(f, 90, 5)
    by_row = np.empty(90)
    by_row[el2n.indices] = el2n.scores
    sel = get_selector("ccs", score_params=SMALL_HEAD, beta=0.0).select(f, 30, 5)
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
    forget = get_selector("d2", score="forgetting", score_params={"hidden": 0, "epochs": 2, "lr": 1e-6})
    out = forget.select(f, 20, 0)
    assert np.isfinite(out.scores).all() and out.info["score"] == "forgetting"


# ---------------------------------------------------------------- d2


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
    sel = get_selector("d2", score="column:s", n_neighbors=k, gamma_f=gamma_f,
                       gamma_r=gamma_r).select({"embedding": x, "s": s}, 15, 0)
    picks, scores = _d2_reference(x, s, 15, k, gamma_f, gamma_r)
    assert sel.indices.tolist() == picks
    np.testing.assert_allclose(sel.scores, scores, rtol=1e-10)


def test_d2_prunes_hardest_first_and_needs_non_negative_difficulty():
    f = _toy()
    sel = get_selector("d2", score="column:hard", beta=0.5).select(f, 10, 0)
    assert f["hard"][sel.indices].max() <= np.sort(f["hard"])[29]
    f["hard"][4] = -0.1
    with pytest.raises(DataError, match=r"D2 needs non-negative difficulty.*first at row 4"):
        get_selector("d2", score="column:hard").select(f, 10, 0)


# ---------------------------------------------------------------- all four

_ALL = [("typiclust", {}), ("probcover", {}), ("ccs", {"score": "column:hard"}),
        ("d2", {"score": "column:hard"}), ("ccs", {"score_params": SMALL_HEAD}),
        ("d2", {"score": "margin", "beta": 0.1})]


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
    ("ccs", {"score_params": {"hiden": 3}}, r"CCS\.score_params: EL2N has no parameter\(s\) \['hiden'\]"),
    ("ccs", {"score_params": {"epochs": 0}}, r"CCS\.score_params: EL2N\.epochs must be an int >= 1"),
    ("d2", {"score": "margin", "score_params": {"n_folds": 1}}, r"D2\.score_params\.n_folds must be"),
    ("d2", {"gamma_r": -1}, r"D2\.gamma_r must be a number >= 0"),
])
def test_bad_parameters_name_owner_field_and_value(name, params, message):
    with pytest.raises(InvalidParameterError, match=message):
        get_selector(name, **params)


def test_params_report_resolved_scorer_defaults_and_required_columns():
    p = get_selector("ccs").params()
    assert p["score_params"]["n_runs"] == 5 and "keep" not in p["score_params"]
    assert get_selector("ccs", score="margin").params()["score_params"] == {"n_folds": 5, "C": 1.0}
    assert get_selector("ccs", score="column:d").required() == ("d",)
    assert get_selector("d2", score="column:d").required() == ("embedding", "d")
    assert get_selector("d2").required() == ("embedding", "label")
    assert get_selector("probcover").required() == ("embedding", "label")
    assert get_selector("probcover", n_clusters=4).required() == ("embedding",)
    assert get_selector("d2", score="column:d").seeded is False
    assert get_selector("d2").seeded is True
