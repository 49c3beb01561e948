"""semantic_lexical and stratified_coreset on real SST-2 features."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from fractions import Fraction

import numpy as np
import pytest

from dataselect.core.errors import DataError
from dataselect.selectors import InvalidParameterError, get_selector
from dataselect.selectors.semantic_lexical import joint_space

# ---------------------------------------------------------------- semantic_lexical


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_semantic_lexical_weight_zero_is_kcenter(sst2_features, metric):
    for seed in (0, 7):
        sl = get_selector("semantic_lexical", lexical_weight=0.0, metric=metric).select(
            sst2_features, 300, seed)
        kc = get_selector("kcenter", metric=metric).select(sst2_features, 300, seed)
        np.testing.assert_array_equal(sl.indices, kc.indices)
    # Weight 0 needs no lexical columns at all.
    emb_only = {"embedding": sst2_features["embedding"]}
    got = get_selector("semantic_lexical", lexical_weight=0).select(emb_only, 50, 1).indices
    np.testing.assert_array_equal(got, get_selector("kcenter", metric="cosine").select(
        emb_only, 50, 1).indices)


def test_joint_space_scaling_splits_distance_by_weight(sst2_features):
    lex = [sst2_features["mattr"], sst2_features["mtld"]]
    w = 0.3
    x = joint_space(sst2_features["embedding"], lex, w, "cosine", "T").astype(np.float64)
    d = sst2_features["embedding"].shape[1]
    emb, lx = x[:, :d], x[:, d:]
    # Each block's total variance is its weight: E||a - b||^2 = 2(1 - w) + 2w = 2.
    assert emb.var(axis=0).sum() == pytest.approx(1 - w, rel=1e-4)
    assert lx.var(axis=0).sum() == pytest.approx(w, rel=1e-6)
    # Rank scaling: the lexical block is bounded, so MTLD's tail cannot dominate.
    assert np.abs(lx).max() < np.sqrt(3 * w)


def _radius(x, centres):
    sq = np.einsum("ij,ij->i", x, x)
    d2 = sq[:, None] + sq[None, centres] - 2 * x @ x[centres].T
    return float(np.sqrt(np.maximum(d2, 0).min(axis=1).max()))


def test_semantic_lexical_weight_trades_embedding_for_lexical_coverage(sst2_features):
    lex = joint_space(sst2_features["embedding"], [sst2_features["mattr"], sst2_features["mtld"]],
                      1.0, "cosine", "T").astype(np.float64)
    emb = sst2_features["embedding"] / np.linalg.norm(sst2_features["embedding"], axis=1, keepdims=True)
    r = {w: get_selector("semantic_lexical", lexical_weight=w).select(sst2_features, 150, 0).indices
         for w in (0.0, 0.5, 1.0)}
    # Measured (150 of 3000): lexical radius 0.26 / 0.15 / 0.014 for w = 0 / 0.5 / 1,
    # embedding radius 1.22 / 1.26 / 1.31 (random: lexical 0.28-0.50, embedding 1.28-1.29).
    assert _radius(lex, r[0.5]) < 0.75 * _radius(lex, r[0.0])
    assert _radius(lex, r[1.0]) < 0.2 * _radius(lex, r[0.0])
    assert _radius(emb, r[0.0]) < _radius(emb, r[0.5]) < _radius(emb, r[1.0])


def test_semantic_lexical_errors():
    cases = [({"lexical_weight": 1.5}, r"SemanticLexical\.lexical_weight must be a number in \[0, 1\]; got 1\.5"),
             ({"lexical_weight": "0.3"}, r"SemanticLexical\.lexical_weight must be"),
             ({"lexical": []}, r"SemanticLexical\.lexical must be a non-empty list"),
             ({"lexical": ["mattr", "mattr"]}, r"SemanticLexical\.lexical must be a non-empty list of distinct"),
             ({"lexical": ["embedding"]}, r"SemanticLexical\.lexical must be 1-D features"),
             ({"metric": "l1"}, r"SemanticLexical\.metric must be 'euclidean' or 'cosine'")]
    for params, msg in cases:
        with pytest.raises(InvalidParameterError, match=msg):
            get_selector("semantic_lexical", **params)
    with pytest.raises(Exception, match=r"SemanticLexical needs features \['mtld'\]"):
        get_selector("semantic_lexical").select({"embedding": np.ones((5, 2)), "mattr": np.ones(5)}, 2, 0)
    with pytest.raises(DataError, match=r"cosine metric needs non-zero embeddings"):
        get_selector("semantic_lexical").select(
            {"embedding": np.zeros((5, 2)), "mattr": np.ones(5), "mtld": np.ones(5)}, 2, 0)


# -------------------------------------------------------------- stratified_coreset


def _bins_brute_force(features, attrs, n_bins):
    """Joint bin key per row, with quantile edges computed independently."""
    keys = []
    for a, k in zip(attrs, n_bins, strict=True):
        v = features[a]
        if k == 0:
            keys.append(np.searchsorted(np.unique(v), v))
        else:
            # Mid-rank quantile: rows below, plus half of the ties (itself included).
            n = len(v)
            mid = np.array([(v < x).sum() + ((v == x).sum() + 1) / 2 for x in v])
            keys.append(np.minimum(np.floor((mid - 0.5) / n * k), k - 1).astype(int))
    return [tuple(r) for r in np.stack(keys, axis=1)]


def _largest_remainder(sizes, budget):
    n = sum(sizes)
    q = [Fraction(budget * s, n) for s in sizes]
    out = [int(v) for v in q]
    for j in sorted(range(len(q)), key=lambda j: (-(q[j] - out[j]), j))[: budget - sum(out)]:
        out[j] += 1
    return out


@pytest.mark.parametrize("budget", [7, 150, 301, 2999])
def test_stratified_coreset_bin_counts_are_exact(sst2_features, budget):
    attrs, n_bins = ("label", "token_count", "flesch_reading_ease"), (0, 4, 3)
    sel = get_selector("stratified_coreset", n_bins=[0, 4, 3]).select(sst2_features, budget, 0)
    keys = _bins_brute_force(sst2_features, attrs, n_bins)
    bins = sorted(set(keys))
    sizes = [keys.count(b) for b in bins]
    want = _largest_remainder(sizes, budget)
    picked = [keys[i] for i in sel.indices]
    assert [picked.count(b) for b in bins] == want
    assert sel.info["allocation"] == want and sel.info["bin_sizes"] == sizes
    assert sel.info["bins"] == [list(map(int, b)) for b in bins]
    assert len(np.unique(sel.indices)) == budget


def test_stratified_coreset_nearest_takes_the_most_central_rows_of_each_bin(sst2_features):
    sel = get_selector("stratified_coreset", within="nearest").select(sst2_features, 200, 0)
    keys = _bins_brute_force(sst2_features, ("label", "token_count", "flesch_reading_ease"), (0, 4, 4))
    x = sst2_features["embedding"].astype(np.float64)
    for b, share in zip(sorted(set(keys)), sel.info["allocation"], strict=True):
        rows = np.array([i for i, k in enumerate(keys) if k == b])
        dist = np.linalg.norm(x[rows] - x[rows].mean(axis=0), axis=1)
        want = set(rows[np.argsort(dist, kind="stable")[:share]].tolist())
        assert {int(i) for i in sel.indices if keys[i] == b} == want


def _herd_reference(x: np.ndarray, k: int) -> list[int]:
    """Textbook herding: each step the row whose addition brings the mean closest to mu."""
    mu, s, picks = x.mean(axis=0), np.zeros(x.shape[1]), []
    for t in range(k):
        gap = [np.inf if i in picks else np.linalg.norm((s + x[i]) / (t + 1) - mu) for i in range(len(x))]
        picks.append(int(np.argmin(gap)))
        s += x[picks[-1]]
    return picks


def test_stratified_coreset_herds_each_bin_toward_its_mean(sst2_features):
    sel = get_selector("stratified_coreset").select(sst2_features, 150, 0)
    keys = _bins_brute_force(sst2_features, ("label", "token_count", "flesch_reading_ease"), (0, 4, 4))
    x = sst2_features["embedding"].astype(np.float64)
    for b, share in zip(sorted(set(keys)), sel.info["allocation"], strict=True):
        if not share:
            continue
        rows = np.array([i for i, k in enumerate(keys) if k == b])
        got = [int(i) for i in sel.indices if keys[i] == b]
        assert got == rows[_herd_reference(x[rows], share)].tolist()  # in pick order


def test_stratified_coreset_herding_is_less_redundant_than_nearest(sst2_features):
    """The defect it fixes: nearest-to-mean picks crowd the centre of each bin."""
    x = sst2_features["embedding"] / np.linalg.norm(sst2_features["embedding"], axis=1, keepdims=True)

    def nn_gap(idx):
        d = 1 - x[idx] @ x[idx].T
        np.fill_diagonal(d, np.inf)
        return d.min(axis=1).mean()

    herd = nn_gap(get_selector("stratified_coreset").select(sst2_features, 150, 0).indices)
    near = nn_gap(get_selector("stratified_coreset", within="nearest").select(sst2_features, 150, 0).indices)
    rand = np.mean([nn_gap(get_selector("random").select(sst2_features, 150, s).indices) for s in range(5)])
    assert near < 0.9 * rand and herd > near * 1.05


_CHILD = textwrap.dedent("""
    import sys, numpy as np
    from dataselect.selectors import get_selector
    d = dict(np.load(sys.argv[1]))
    sys.stdout.write(get_selector("stratified_coreset").select(d, 300, int(sys.argv[2])).indices.tobytes().hex())
""")


def test_stratified_coreset_identical_across_seeds_and_processes(sst2_features, tmp_path):
    cols = ("embedding", "label", "token_count", "flesch_reading_ease")
    np.savez(tmp_path / "f.npz", **{c: sst2_features[c] for c in cols})
    sel = get_selector("stratified_coreset")
    assert sel.seeded is False
    here = sel.select(sst2_features, 300, 0).indices
    for seed in (1, 12345):
        np.testing.assert_array_equal(sel.select(sst2_features, 300, seed).indices, here)
    child = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "f.npz"), "99"],
                           capture_output=True, text=True, check=True).stdout
    assert child == here.tobytes().hex()


def test_stratified_coreset_empty_and_tiny_bins():
    # A discrete attribute with a heavy atom: quantile bin 2 stays empty and
    # is dropped; the 1-row bin's quota (0.1 row) loses the remainder to 0.9.
    tokens = np.r_[1.0, np.full(90, 5.0), np.arange(9.0) + 10]
    feats = {"embedding": np.random.default_rng(0).normal(size=(100, 3)), "token_count": tokens}
    sel = get_selector("stratified_coreset", attributes=["token_count"], n_bins=4)
    got = sel.select(feats, 10, 0)
    assert got.info["bins"] == [[0], [1], [3]]
    assert got.info["bin_sizes"] == [1, 90, 9] and got.info["allocation"] == [0, 9, 1]
    assert got.info["ranges"]["token_count"] == [[1.0, 1.0], [5.0, 5.0], [10.0, 18.0]]
    assert sorted(sel.select(feats, 100, 0).indices.tolist()) == list(range(100))
    assert sel.select(feats, 1, 0).indices.tolist() != []


def test_stratified_coreset_errors():
    cases = [({"n_bins": 0}, r"StratifiedCoreset\.n_bins must be an int >= 1 or a list of ints >= 0; got 0"),
             ({"n_bins": [2, 2]}, r"StratifiedCoreset\.n_bins must be one count per attribute \(3\)"),
             ({"n_bins": [0, -1, 2]}, r"StratifiedCoreset\.n_bins must be an int >= 1 or a list"),
             ({"attributes": []}, r"StratifiedCoreset\.attributes must be a non-empty list"),
             ({"attributes": ["embedding"]}, r"StratifiedCoreset\.attributes must be 1-D features")]
    for params, msg in cases:
        with pytest.raises(InvalidParameterError, match=msg):
            get_selector("stratified_coreset", **params)
    feats = {"embedding": np.ones((4, 2)), "label": np.array(["a", "b", "a", "b"])}
    with pytest.raises(DataError, match=r"features\['label'\] needs n_bins=0"):
        get_selector("stratified_coreset", attributes=["label"], n_bins=[2]).select(feats, 2, 0)
