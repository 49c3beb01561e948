"""Prefix consistency: a selector that declares it gives, at budget b, exactly
the first b picks, scores and the info of its run at a larger budget.

The select stage relies on this to run only a seed's largest budget and cut
the smaller manifests from it (``Selector.truncate``), so every declaration
is checked against separate runs, bit for bit, and every registered selector
must be classified here one way or the other.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataselect.core.errors import UserError
from dataselect.selectors import available, get_selector

_HEAD = {"hidden": 4, "epochs": 2}
_EL2N = {"name": "el2n", "params": {**_HEAD, "n_runs": 1}}

PREFIX = [
    ("full", {}),
    ("herding", {}),
    ("kcenter", {}),
    ("kcenter", {"metric": "cosine"}),
    ("kcenter", {"initial": [3, 7]}),
    ("semantic_lexical", {}),
    ("semantic_lexical", {"lexical_weight": 0.0, "metric": "euclidean"}),
    ("perplexity", {"rank_by": "token_count"}),
    ("perplexity", {"rank_by": "perplexity", "descending": True, "q_low": 0.0, "q_high": 1.0}),
    ("pseudo_perplexity", {"rank_by": "pseudo_perplexity", "q_low": 0.0}),
    ("entropy", {}),
    ("entropy", {"keep": "low"}),
    ("self_filter", {}),
    ("wordpiece_ratio", {"keep": "high"}),
    ("wordpiece_ratio", {"keep": "low"}),
    ("llm_judge", {"fill": "score", "ambiguous_max": 10.0, "sarcastic_max": 10.0}),
    ("cleanlab", {"fill": "quality"}),
    ("consistency", {"fill": "stable", "min_flips": 4}),
    ("grand", {"hidden": 4, "n_inits": 1}),
    ("el2n", {**_HEAD, "n_runs": 1}),
    ("el2n", {**_HEAD, "n_runs": 1, "keep": "lowest"}),
    ("forgetting", _HEAD),
    ("d2", {"score": "el2n", "score_params": {**_HEAD, "n_runs": 1}, "beta": 0.0, "per_class": "none"}),
    ("d2", {"score": "column:perplexity", "beta": 0.0, "per_class": "none"}),
    ("fusion", {"members": [_EL2N, {"name": "herding", "weight": 0.5}]}),
    ("dsir", {}),
    ("dsir", {"top_k": True}),
    ("density_ratio", {"n_folds": 3}),
    ("density_ratio", {"n_folds": 3, "mode": "sample", "temperature": 2.0}),
    ("density_ratio", {"method": "moore_lewis"}),
    ("gradient_match", {"steps": 20, "checkpoints": 2, "dim": 16}),
]

NOT_PREFIX = [
    ("random", {}),
    ("kmeans", {"n_clusters": 5}),
    ("typiclust", {}),
    ("probcover", {"n_clusters": 3}),
    ("ccs", {}),
    ("stratified_coreset", {}),
    ("pipeline", {"stages": [{"name": "kcenter", "keep": 0.8}, {"name": "herding"}]}),
    ("perplexity", {}),
    ("pseudo_perplexity", {}),
    ("entropy", {"keep": "band"}),
    ("self_filter", {"keep": "band", "q_low": 0.1}),
    ("wordpiece_ratio", {}),
    ("llm_judge", {}),
    ("cleanlab", {}),
    ("consistency", {}),
    ("d2", {"score": "column:perplexity", "beta": 0.1, "per_class": "none"}),
    ("d2", {"score_params": _HEAD}),  # the authors' recipe: pruned, class-balanced
    ("fusion", {"members": [_EL2N, {"name": "kcenter", "rows": "budget"}]}),
    ("herding", {"per_class": "proportional"}),
    ("kcenter", {"per_class": "balanced"}),
    ("metric_match", {}),
]

N = 60
BUDGETS = [1, 2, 5, 13, 29, 39]
LARGEST = 40


def _outcome(fn):
    """The selection, or the error a run raises (type and message)."""
    try:
        return fn()
    except UserError as err:
        return (type(err), str(err))


def _assert_same(got, want) -> None:
    if isinstance(want, tuple):
        assert got == want
        return
    assert not isinstance(got, tuple), got
    np.testing.assert_array_equal(got.indices, want.indices)
    if want.scores is None:
        assert got.scores is None
    else:
        # Bitwise: inf (kcenter's first pick) and equal floats compare equal.
        assert got.scores.tobytes() == want.scores.tobytes()
    assert got.info == want.info


def test_every_selector_is_classified():
    names = {n for n, _ in PREFIX} | {n for n, _ in NOT_PREFIX}
    assert names == set(available())


@pytest.mark.parametrize(("name", "params"), NOT_PREFIX, ids=lambda v: str(v))
def test_not_prefix_consistent_refuses_to_truncate(toy, name, params):
    s = get_selector(name, **params)
    assert s.prefix_consistent is False
    sel = s.select(toy(N, max_tokens=8), 20, 0)
    with pytest.raises(TypeError, match="not prefix-consistent"):
        s.truncate(sel, 10)


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize(("name", "params"), PREFIX, ids=lambda v: str(v))
def test_prefix_equals_separate_run(toy, name, params, seed):
    s = get_selector(name, **params)
    assert s.prefix_consistent is True
    feats = toy(N, seed=seed, max_tokens=8)
    big = s.select(feats, LARGEST, seed)
    _assert_same(s.truncate(big, LARGEST), big)
    for b in BUDGETS:
        want = _outcome(lambda b=b: get_selector(name, **params).select(feats, b, seed))
        _assert_same(_outcome(lambda b=b: s.truncate(big, b)), want)


def test_truncate_checks_budget(toy):
    s = get_selector("herding")
    sel = s.select(toy(N, max_tokens=8), 10, 0)
    for bad in (0, 11, 2.5):
        with pytest.raises(UserError, match=r"Herding\.budget must be an int in \[1, 10\]"):
            s.truncate(sel, bad)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 40), d=st.integers(1, 5), seed=st.integers(0, 2**16),
       dup=st.booleans(), metric=st.sampled_from(["euclidean", "cosine"]),
       cut=st.floats(0.0, 1.0))
def test_greedy_prefix_on_random_shapes(n, d, seed, dup, metric, cut):
    """Herding and k-center on arbitrary small tables, duplicates and float64 included."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    if dup:  # exact duplicates and ties in distance
        x[n // 2:] = x[: n - n // 2]
    x = x + 3.0 if metric == "cosine" else x  # no zero rows for cosine
    feats = {"embedding": x}
    big_budget = n
    b = max(1, min(n, int(cut * n)))
    for name, params in [("herding", {}), ("kcenter", {"metric": metric})]:
        s = get_selector(name, **params)
        big = s.select(feats, big_budget, seed)
        _assert_same(s.truncate(big, b), s.select(feats, b, seed))
