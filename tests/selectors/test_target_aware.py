"""Target-aware selectors against brute force and data with a known answer.

dsir, density_ratio (classifier and Moore–Lewis), gradient_match and
metric_match, plus the Gumbel top-k sampler they share and the target
columns' passage through per-class, pipeline and fusion wrappers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dataselect.core.errors import UserError
from dataselect.features.ngrams import hash_bucket, hashed_ngrams
from dataselect.selectors import get_selector
from dataselect.selectors.dsir import PAPER, bag_log_ratio, row_sums
from dataselect.selectors.gradient_match import projected_grads, softmax_head_steps
from dataselect.selectors.metric_match import joint_bins
from dataselect.selectors.resample import gumbel_top_k, top_k


def _ragged(rows):
    out = np.empty(len(rows), dtype=object)
    out[:] = [np.asarray(r, np.int64) for r in rows]
    return out


# --------------------------------------------------------------------------- Gumbel top-k
def test_gumbel_first_pick_follows_the_weights():
    """The first draw is categorical(softmax(log w)): 20,000 seeded draws, 5 sigma."""
    logw = np.log(np.array([1.0, 2.0, 3.0, 4.0]))
    p = np.exp(logw) / np.exp(logw).sum()
    firsts = np.array([gumbel_top_k(logw, 1, np.random.default_rng(s))[0][0] for s in range(20000)])
    freq = np.bincount(firsts, minlength=4) / len(firsts)
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / len(firsts)))


def test_gumbel_second_pick_is_drawn_from_the_rest():
    """P(first=0, second=1) = p0 * p1 / (1 - p0), sampling without replacement."""
    w = np.array([1.0, 2.0, 3.0, 4.0])
    p = w / w.sum()
    pairs = [tuple(gumbel_top_k(np.log(w), 2, np.random.default_rng(s))[0]) for s in range(20000)]
    got = np.mean([pr == (0, 1) for pr in pairs])
    want = p[0] * p[1] / (1 - p[0])
    assert abs(got - want) < 5 * math.sqrt(want * (1 - want) / len(pairs))
    assert all(a != b for a, b in pairs)


def test_top_k_orders_and_breaks_ties_by_index():
    keys = np.array([1.0, 3.0, 3.0, -np.inf, 2.0, 3.0])
    assert top_k(keys, 4).tolist() == [1, 2, 5, 4]
    assert top_k(keys, 6).tolist() == [1, 2, 5, 4, 0, 3]


# --------------------------------------------------------------------------- DSIR
def test_hashed_ngrams_match_the_authors_featurizer():
    """Same buckets as data-selection's get_ngram_counts (wordpunct, sha256, 10,000)."""
    pkg = pytest.importorskip("data_selection.hashed_ngram_dsir")
    texts = ["A gorgeous, witty film!", "it 's not   bad ...", "naïve café-au-lait (2nd)"]
    for text, buckets in zip(texts, hashed_ngrams(texts), strict=True):
        want = pkg.get_ngram_counts(text, n=2, num_buckets=10000)
        np.testing.assert_array_equal(np.bincount(buckets, minlength=10000), want)
    assert hash_bucket("film", 10000) == pkg.hash_buckets("film", 10000)


def test_dsir_log_weights_equal_the_hand_computed_ones():
    pool = _ragged([[0, 1], [1, 1, 2], [3], []])
    target = _ragged([[1, 2], [2, 2]])
    # pool counts 0:1 1:3 2:1 3:1 (6), target 1:1 2:3 (4)
    p_pool = np.array([1, 3, 1, 1]) / 6
    p_t = np.array([0, 1, 3, 0]) / 4
    lr = np.log(p_t + 1e-8) - np.log(p_pool + 1e-8)
    np.testing.assert_allclose(bag_log_ratio(pool, target), lr)
    sums, lengths = row_sums(pool, lr)
    np.testing.assert_allclose(sums, [lr[0] + lr[1], 2 * lr[1] + lr[2], lr[3], 0.0])
    assert lengths.tolist() == [2, 3, 1, 0]
    sel = get_selector("dsir", backoff=0.0, top_k=True).select({"ngram_buckets": pool, "target:ngram_buckets": target},
                                                               2, 0)
    assert sel.indices.tolist() == list(np.argsort(-sums)[:2])


def test_dsir_resamples_toward_the_target_vocabulary():
    """Rows built from the target's n-grams are picked far above their pool share."""
    rng = np.random.default_rng(0)
    pool = _ragged([rng.integers(0, 50, 6) if i % 10 == 0 else rng.integers(50, 100, 6) for i in range(500)])
    target = _ragged([rng.integers(0, 50, 6) for _ in range(100)])
    sel = get_selector("dsir", **PAPER).select({"ngram_buckets": pool, "target:ngram_buckets": target}, 40, 1)
    assert np.mean(sel.indices % 10 == 0) > 0.9  # 10 % of the pool


def test_dsir_needs_a_target():
    with pytest.raises(UserError, match=r"needs features \['target:ngram_buckets'\]"):
        get_selector("dsir").select({"ngram_buckets": _ragged([[1], [2]])}, 1, 0)


# --------------------------------------------------------------------------- density ratio
def _gaussians(n=3000, m=800, d=4, shift=1.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    mu = np.zeros(d)
    mu[0] = shift
    xt = rng.normal(size=(m, d)) + mu
    # log p_t(x) / p_p(x) for unit-variance Gaussians: mu . x - |mu|^2 / 2
    return x, xt, x @ mu - mu @ mu / 2


def test_classifier_ratio_tracks_the_true_density_ratio():
    from scipy.stats import spearmanr

    x, xt, truth = _gaussians()
    s = get_selector("density_ratio", column="embedding")
    logw, info = s.log_ratios({"embedding": x, "target:embedding": xt}, seed=0)
    assert spearmanr(logw, truth).statistic > 0.97
    # the calibrated odds (x n / m) recover the ratio's scale, not only its order
    assert np.polyfit(truth, logw, 1)[0] == pytest.approx(1.0, abs=0.15)
    assert 0.65 < info["target_auc"] < 0.8  # two unit Gaussians 1 sd apart: AUC = Phi(1/sqrt(2)) = 0.76


def test_every_row_is_scored_by_a_model_that_did_not_see_it():
    """Cross-fitting: a pool row that is also a target row is not scored as
    memorised; with folds of one model that saw everything it would be."""
    x, xt, _ = _gaussians(n=400, m=100, d=30, shift=0.0, seed=3)
    x[:50] = xt[:50]  # 50 pool rows are copies of target rows
    s = get_selector("density_ratio", column="embedding", C=100.0)
    logw, _ = s.log_ratios({"embedding": x, "target:embedding": xt}, seed=0)
    # Out of fold, a copy looks no more target-like than any other row (same distribution).
    assert abs(np.median(logw[:50]) - np.median(logw[50:])) < 1.0


def test_moore_lewis_scores_equal_the_hand_computed_ones():
    pool = _ragged([[0, 0], [1], [2, 1], [0, 2]])
    target = _ragged([[1, 1], [2]])
    logw, info = get_selector("density_ratio", method="moore_lewis", shrinkage=0.0).log_ratios(
        {"ngram_buckets": pool, "target:ngram_buckets": target}, seed=0)
    order = np.random.default_rng(0).permutation(4)
    sizes = np.array([len(pool[i]) for i in order])
    take = order[: int(np.searchsorted(np.cumsum(sizes), 3)) + 1]
    assert info["pool_sample_rows"] == len(take)
    cp = np.bincount(np.concatenate([pool[i] for i in take]), minlength=3)
    ct = np.array([0, 2, 1])
    lp = np.log((cp + 1.0) / (cp.sum() + 3.0))
    lt = np.log((ct + 1.0) / (ct.sum() + 3.0))
    want = [np.mean([(lt - lp)[b] for b in row]) for row in pool]
    np.testing.assert_allclose(logw, want)


# --------------------------------------------------------------------------- gradient match
def test_projected_gradients_equal_the_explicit_outer_product():
    rng = np.random.default_rng(0)
    x, y, k = rng.normal(size=(7, 3)), rng.integers(0, 3, 7), 3
    w = rng.normal(size=(4, k))
    proj = rng.normal(size=(4 * k, 5))
    xb = np.hstack([x, np.ones((7, 1))])
    p = np.exp(xb @ w)
    p /= p.sum(1, keepdims=True)
    grads = np.stack([np.kron(p[i] - np.eye(k)[y[i]], xb[i]) for i in range(7)])  # class-major blocks
    g = grads @ proj
    np.testing.assert_allclose(projected_grads(x, y, w, proj), g / np.linalg.norm(g, axis=1, keepdims=True))


def test_warmup_descends_the_loss():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5))
    y = (x[:, 0] + 0.3 * rng.normal(size=200) > 0).astype(int)
    heads = softmax_head_steps(x, y, 2, 50, 0.5, {1, 25, 50})

    def loss(w):
        z = np.hstack([x, np.ones((200, 1))]) @ w
        z -= z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(200), y]))

    assert loss(heads[1]) > loss(heads[25]) > loss(heads[50])


@pytest.mark.parametrize("labelled", [False, True])
def test_gradient_match_prefers_the_pool_rows_from_the_target_domain(labelled):
    """Two domains with opposite decision rules; the target is domain A: a step on
    an A row lowers the target loss, a step on a B row raises it, so the picks
    come from A (TracIn's sign, not a similarity of inputs: the domain feature
    alone would not tell a linear head which rule to follow)."""
    rng = np.random.default_rng(2)
    n, m = 1200, 300
    dom = rng.integers(0, 2, n)  # 1 = domain A
    x = rng.normal(size=(n, 6))
    x[:, 5] = np.where(dom == 1, 3.0, -3.0)
    y = np.where(dom == 1, x[:, 0] > 0, x[:, 0] < 0).astype(np.int64)
    xt = rng.normal(size=(m, 6))
    xt[:, 5] = 3.0
    yt = (xt[:, 0] > 0).astype(np.int64) if labelled else np.full(m, -1)
    feats = {"embedding_norm": x, "label": y, "target:embedding_norm": xt, "target:label": yt}
    sel = get_selector("gradient_match", warmup_fraction=0.2).select(feats, 150, 0)
    assert dom[sel.indices].mean() > 0.9
    assert sel.info["target_labels"].startswith("given" if labelled else "predicted")


# --------------------------------------------------------------------------- metric match
def test_joint_bins_are_quantile_bins_of_both_sets():
    pool, target = [np.arange(10.0)], [np.arange(10.0, 20.0)]
    ids_p, ids_t, size = joint_bins(pool, target, bins=4)
    assert size == 4 and ids_p.tolist() == [0] * 5 + [1] * 5 and ids_t.tolist() == [2] * 5 + [3] * 5


def test_metric_match_gives_the_subset_the_targets_length_histogram():
    rng = np.random.default_rng(4)
    pool_len = rng.integers(1, 40, 20000)
    target_len = np.clip(rng.normal(20, 3, 1000).round(), 1, 39)
    feats = {"token_count": pool_len, "target:token_count": target_len}
    sel = get_selector("metric_match", bins=10).select(feats, 1000, 0)
    assert abs(pool_len[sel.indices].mean() - target_len.mean()) < 1.0
    assert sel.info["tv_subset"] < 0.1 < sel.info["tv_pool"]


# --------------------------------------------------------------------------- wrappers
def test_target_columns_pass_through_per_class_pipeline_and_fusion(toy):
    f = toy(80)
    for name, params in [("dsir", {"per_class": "balanced"}),
                         ("pipeline", {"stages": [{"name": "metric_match", "keep": 0.5}, {"name": "dsir"}]}),
                         ("fusion", {"members": [{"name": "density_ratio", "params": {"n_folds": 3}},
                                                 {"name": "kcenter", "rows": "budget"}]})]:
        s = get_selector(name, **params)
        assert any(c.startswith("target:") for c in s.required())
        sel = s.select(f, 20, 0)
        assert len(set(sel.indices.tolist())) == 20 and sel.indices.max() < 80
    balanced = get_selector("dsir", per_class="balanced").select(f, 20, 0)
    assert np.bincount(f["label"][balanced.indices]).tolist() == [10, 10]
