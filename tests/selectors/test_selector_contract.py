"""Registry, validation and determinism promises shared by every selector."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from dataselect.core.errors import DataError, UserError
from dataselect.selectors import (
    FeatureError,
    InvalidParameterError,
    Selection,
    UnknownSelectorError,
    available,
    get_selector,
)

ALL = ["ccs", "cleanlab", "consistency", "d2", "density_ratio", "dsir", "el2n", "entropy", "forgetting",
       "full", "fusion", "gradient_match", "grand", "herding", "kcenter", "kmeans", "llm_judge",
       "metric_match", "perplexity", "pipeline", "probcover", "pseudo_perplexity", "random",
       "self_filter", "semantic_lexical", "stratified_coreset", "typiclust", "wordpiece_ratio"]


# Small heads keep the importance selectors fast on the toy tables.
_HEAD = {"hidden": 4, "epochs": 2}
_PARAMS = {
    "kmeans": {"n_clusters": 5},
    "probcover": {"n_clusters": 3},
    "grand": {"hidden": 4, "n_inits": 1},
    "el2n": {**_HEAD, "n_runs": 1},
    "forgetting": _HEAD,
    "ccs": {},  # the authors' recipe: out-of-fold margins, 30 % pruned
    "d2": {"score_params": _HEAD},  # the authors' recipe: forgetting, 40 % pruned by margin, per class
    "pipeline": {"stages": [{"name": "kcenter", "keep": 0.8}, {"name": "herding"}]},
    "fusion": {"members": [{"name": "el2n", "params": {**_HEAD, "n_runs": 1}},
                           {"name": "kcenter", "rows": "budget", "weight": 0.5}]},
    "density_ratio": {"n_folds": 3},
    "gradient_match": {"steps": 20, "checkpoints": 2, "dim": 16},
}


def _params(name):
    return dict(_PARAMS.get(name, {}))


def test_registry_lists_every_selector():
    assert available() == ALL


def test_unknown_name_lists_known_names():
    with pytest.raises(UnknownSelectorError, match=r"unknown selector 'kcentre'; known: \[.*'kcenter'"):
        get_selector("kcentre")
    with pytest.raises(KeyError):  # also a KeyError, for mapping-style callers
        get_selector("nope")


def test_unknown_parameter_names_owner_and_valid_params():
    with pytest.raises(InvalidParameterError, match=r"KCenterGreedy has no parameter\(s\) \['k'\]"):
        get_selector("kcenter", k=3)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("budget", [0, -1, 51, 2.5, True])
def test_bad_budget(toy, name, budget):
    with pytest.raises(InvalidParameterError, match=r"\.budget must be an int in \[1, 50\]"):
        get_selector(name, **_params(name)).select(toy(), budget, 0)


def test_bad_seed(toy):
    with pytest.raises(InvalidParameterError, match=r"RandomSelector\.seed must be"):
        get_selector("random").select(toy(), 5, -1)


@pytest.mark.parametrize("name", ["kcenter", "kmeans", "herding", "typiclust", "probcover"])
def test_nan_inf_and_empty_dims_in_embedding(toy, name):
    f = toy()
    f["embedding"][7, 2] = np.nan
    f["embedding"][9, 0] = np.inf
    with pytest.raises(DataError, match=r"features\['embedding'\] has NaN/inf in 2 row\(s\), first at row 7"):
        get_selector(name, **_params(name)).select(f, 5, 0)
    with pytest.raises(DataError, match=r"features\['embedding'\] must be \(n, d\) with d >= 1; got shape \(50, 0\)"):
        get_selector(name, **_params(name)).select({"embedding": np.zeros((50, 0))}, 5, 0)
    with pytest.raises(DataError, match=r"features\['embedding'\] must be \(n, d\)"):
        get_selector(name, **_params(name)).select({"embedding": np.zeros(50)}, 5, 0)


def test_nan_in_perplexity_and_mismatched_lengths(toy):
    f = toy()
    f["perplexity"][3] = np.nan
    with pytest.raises(DataError, match=r"features\['perplexity'\] has NaN/inf.*row 3"):
        get_selector("perplexity").select(f, 5, 0)
    with pytest.raises(DataError, match=r"features\['label'\] has 49 rows but features\['embedding'\] has 50"):
        get_selector("kcenter", per_class="balanced").select(
            {"embedding": np.ones((50, 2)), "label": np.zeros(49)}, 5, 0)


@pytest.mark.parametrize("name,missing", [("kcenter", "embedding"), ("kmeans", "embedding"),
                                          ("herding", "embedding"), ("perplexity", "perplexity"),
                                          ("typiclust", "embedding"), ("ccs", "embedding")])
def test_missing_feature_is_named(name, missing):
    with pytest.raises(FeatureError, match=rf"needs features \['{missing}'\]"):
        get_selector(name).select({"label": np.zeros(10)}, 2, 0)
    with pytest.raises(FeatureError, match=r"needs features \['label'\]"):
        get_selector("random", per_class="proportional").select({"embedding": np.ones((5, 2))}, 2, 0)


def test_errors_are_one_line_user_errors():
    cases = [lambda: get_selector("x"), lambda: get_selector("kcenter", metric=1),
             lambda: get_selector("kcenter").select({}, 1, 0)]
    for case in cases:
        with pytest.raises(UserError) as exc:
            case()
        assert "\n" not in str(exc.value) and not str(exc.value).startswith("'")


@pytest.mark.parametrize("name", ALL)
def test_selection_contract(toy, name):
    f = toy(n=60)
    sel = get_selector(name, **_params(name)).select(f, 12, 4)
    assert isinstance(sel, Selection)
    assert sel.indices.dtype == np.int64 and len(np.unique(sel.indices)) == 12
    assert ((sel.indices >= 0) & (sel.indices < 60)).all()
    assert sel.scores is None or sel.scores.shape == (12,)
    json.dumps(sel.info, allow_nan=False)
    with pytest.raises(ValueError):
        sel.indices[0] = 1  # frozen all the way down
    params = get_selector(name, **_params(name)).params()
    assert params["per_class"] == ("balanced" if name == "d2" else "none")  # d2: the authors run it per class
    json.dumps(params)


def test_dataframe_features_work(toy):
    f = toy()
    df = pd.DataFrame({"label": f["label"], "embedding": list(f["embedding"])})
    a = get_selector("kcenter").select(df, 10, 0).indices
    b = get_selector("kcenter").select(f, 10, 0).indices
    np.testing.assert_array_equal(a, b)


def test_same_seed_same_picks_different_seed_different_picks(toy):
    f = toy(n=500, d=8)
    for name in ["random", "kcenter", "kmeans", "perplexity", "semantic_lexical", "grand", "el2n",
                 "forgetting", "pipeline", "fusion", "typiclust", "probcover", "ccs", "d2"]:
        s = get_selector(name, **_params(name))
        assert np.array_equal(s.select(f, 40, 1).indices, s.select(f, 40, 1).indices)
        assert not np.array_equal(s.select(f, 40, 1).indices, s.select(f, 40, 2).indices)


_CHILD = textwrap.dedent("""
    import sys, numpy as np
    from dataselect.selectors import get_selector
    x = np.load(sys.argv[1])
    feats = {"embedding": x, "label": np.load(sys.argv[2])}
    for name, params in [("random", {}), ("kcenter", {}), ("kmeans", {"n_clusters": 50}),
                         ("herding", {}), ("kcenter", {"per_class": "balanced"})]:
        idx = get_selector(name, **params).select(feats, 100, 11).indices
        sys.stdout.write(idx.tobytes().hex() + "\\n")
""")


def test_determinism_across_processes(sst2_features, tmp_path):
    np.save(tmp_path / "x.npy", sst2_features["embedding"])
    np.save(tmp_path / "y.npy", sst2_features["label"])
    runs = [
        subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                       capture_output=True, text=True, check=True).stdout.split()
        for _ in range(2)
    ]
    feats = {"embedding": sst2_features["embedding"], "label": sst2_features["label"]}
    here = [get_selector(n, **p).select(feats, 100, 11).indices.tobytes().hex()
            for n, p in [("random", {}), ("kcenter", {}), ("kmeans", {"n_clusters": 50}),
                         ("herding", {}), ("kcenter", {"per_class": "balanced"})]]
    assert runs[0] == runs[1] == here


@pytest.mark.parametrize(
    ("name", "params"),
    [("herding", {}), ("full", {}), ("herding", {"per_class": "balanced"}),
     ("perplexity", {"rank_by": "token_count"}), ("stratified_coreset", {}),
     ("pipeline", {"stages": [{"name": "stratified_coreset", "keep": 0.5}, {"name": "herding"}]}),
     ("fusion", {"members": [{"name": "herding", "rows": "budget"}, {"name": "stratified_coreset"}]}),
     ("d2", {"score": "column:perplexity", "beta": 0.0, "per_class": "none"})],
)
def test_unseeded_selectors_ignore_the_seed(sst2_features, name, params):
    # The select stage shares one manifest across seeds for these: that is
    # only sound if the picks really do not depend on the seed.
    sel = get_selector(name, **params)
    assert sel.seeded is False
    a = sel.select(sst2_features, 150, seed=0)
    b = sel.select(sst2_features, 150, seed=12345)
    np.testing.assert_array_equal(a.indices, b.indices)


@pytest.mark.parametrize(("name", "params"), [("random", {}), ("kcenter", {}), ("kmeans", {"n_clusters": 10}),
                                              ("perplexity", {}), ("semantic_lexical", {}),
                                              ("grand", {"hidden": 8, "n_inits": 1}),
                                              ("el2n", {"hidden": 8, "epochs": 2, "n_runs": 1}),
                                              ("forgetting", {"hidden": 8, "epochs": 3}),
                                              ("typiclust", {}), ("probcover", {}),
                                              ("ccs", {"score": "margin"}),
                                              ("d2", {"score_params": {"hidden": 8, "epochs": 3}})])
def test_seeded_selectors_use_the_seed(sst2_features, name, params):
    sel = get_selector(name, **params)
    assert sel.seeded is True
    a = sel.select(sst2_features, 150, seed=0)
    b = sel.select(sst2_features, 150, seed=1)
    assert not np.array_equal(np.sort(a.indices), np.sort(b.indices))
