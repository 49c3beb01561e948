"""Per-class stratification: exact counts, global indices, for every selector."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from dataselect.selectors import InvalidParameterError, PerClass, available, get_selector
from dataselect.selectors.stratify import balanced_shares


def _largest_remainder(sizes, budget):
    n = sum(sizes)
    q = [Fraction(budget * s, n) for s in sizes]
    out = [int(v) for v in q]
    for j in sorted(range(len(q)), key=lambda j: (-(q[j] - out[j]), j))[: budget - sum(out)]:
        out[j] += 1
    return out


@pytest.mark.parametrize("name", ["random", "full", "kcenter", "kmeans", "herding", "perplexity"])
@pytest.mark.parametrize("mode", ["proportional", "balanced"])
def test_every_selector_stratifies_to_exact_global_counts(sst2_features, name, mode):
    labels = sst2_features["label"]
    params = {"n_clusters": 20} if name == "kmeans" else {}
    budget = 301
    sel = get_selector(name, per_class=mode, **params).select(sst2_features, budget, 0)
    sizes = np.bincount(labels).tolist()
    want = _largest_remainder(sizes, budget) if mode == "proportional" else [151, 150]
    assert np.bincount(labels[sel.indices], minlength=2).tolist() == want
    assert len(np.unique(sel.indices)) == budget
    assert sel.info["allocation"] == {"0": want[0], "1": want[1]}
    # Global positions: the same rows as running the selector inside each class.
    for c in (0, 1):
        rows = np.flatnonzero(labels == c)
        picked = sel.indices[labels[sel.indices] == c]
        assert np.isin(picked, rows).all()


def test_stratified_picks_equal_selector_run_on_each_class(sst2_features):
    labels = sst2_features["label"]
    sel = get_selector("kcenter", per_class="proportional").select(sst2_features, 200, 5)
    seeds = np.random.default_rng(5).integers(0, 2**63 - 1, size=2)
    expected = []
    for c in (0, 1):
        rows = np.flatnonzero(labels == c)
        share = sel.info["allocation"][str(c)]
        rng_sel = get_selector("kcenter")
        sub = rng_sel._select({"embedding": sst2_features["embedding"][rows]}, len(rows), share,
                              np.random.default_rng(seeds[c]))
        expected.append(rows[sub.indices])
    np.testing.assert_array_equal(sel.indices, np.concatenate(expected))


def test_balanced_caps_small_classes_and_redistributes():
    assert balanced_shares(np.array([5, 50, 945]), 60).tolist() == [5, 28, 27]
    assert balanced_shares(np.array([3, 3, 3]), 9).tolist() == [3, 3, 3]
    assert balanced_shares(np.array([1, 100]), 2).tolist() == [1, 1]
    labels = np.repeat(np.array(["neg", "neu", "pos"]), [5, 50, 945])
    x = np.random.default_rng(0).normal(size=(1000, 4))
    sel = get_selector("herding", per_class="balanced").select(
        {"embedding": x, "label": labels}, 60, 0
    )
    assert {k: int((labels[sel.indices] == k).sum()) for k in ("neg", "neu", "pos")} == {
        "neg": 5, "neu": 28, "pos": 27}


def test_proportional_by_hand():
    labels = np.repeat([0, 1, 2], [10, 20, 70])
    sel = get_selector("random", per_class="proportional").select({"label": labels}, 7, 0)
    # quotas 0.7, 1.4, 4.9 -> floors 0, 1, 4; remainders .7, .4, .9 -> +1 to 2 and 0
    assert np.bincount(labels[sel.indices]).tolist() == [1, 1, 5]


def test_per_class_params_and_errors():
    sel = get_selector("kcenter", per_class="balanced")
    assert isinstance(sel, PerClass) and sel.name == "kcenter"
    assert sel.params() == {"metric": "euclidean", "initial": None, "per_class": "balanced"}
    assert "label" in sel.required()
    with pytest.raises(InvalidParameterError, match=r"KCenterGreedy\.per_class must be one of"):
        get_selector("kcenter", per_class="stratified")
    with pytest.raises(InvalidParameterError, match=r"KCenterGreedy\.initial .*per_class"):
        get_selector("kcenter", per_class="balanced", initial=[0])
    assert set(available()) >= {"random", "full", "kcenter", "kmeans", "herding", "perplexity"}
