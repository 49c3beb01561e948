"""pipeline and fusion: exact stage budgets, nested subsets, one-member fusion = the member."""

from __future__ import annotations

import numpy as np
import pytest

from dataselect.core.errors import DataError
from dataselect.selectors import InvalidParameterError, get_selector
from dataselect.selectors.fusion import rank_normalise
from dataselect.selectors.pipeline import InsufficientStageError

_STAGES = [
    {"name": "perplexity", "params": {"q_low": 0.05, "q_high": 0.95}, "keep": 0.6},
    {"name": "kcenter", "params": {"metric": "cosine"}, "keep": 700},
    {"name": "el2n", "params": {"hidden": 8, "epochs": 2, "n_runs": 1}},
]


@pytest.mark.parametrize("budget", [150, 300, 700])
def test_pipeline_budgets_exact_and_nested(sst2_features, monkeypatch, budget):
    # Rows with unique embeddings, so a stage's rows can be traced back by content.
    _, first = np.unique(sst2_features["embedding"], axis=0, return_index=True)
    feats = {k: v[np.sort(first)] for k, v in sst2_features.items()}
    row_of = {e.tobytes(): i for i, e in enumerate(feats["embedding"])}
    pipe = get_selector("pipeline", stages=_STAGES)
    calls = []
    for member in pipe._members:  # frozen instances: spy on the classes
        orig = type(member)._select

        def spy(self, features, n, k, rng, _orig=orig):
            sel = _orig(self, features, n, k, rng)
            seen = [row_of[e.tobytes()] for e in features["embedding"]]
            calls.append((n, k, {seen[i] for i in sel.indices}))
            return sel

        monkeypatch.setattr(type(member), "_select", spy)
    sel = pipe.select(feats, budget, seed=3)
    n = len(feats["label"])
    assert [c[0] for c in calls] == [n, round(0.6 * n), 700]  # rows each stage received
    assert [c[1] for c in calls] == [round(0.6 * n), 700, budget]  # and had to keep
    assert [s["kept"] for s in sel.info["stages"]] == [round(0.6 * n), 700, budget]
    kept = [c[2] for c in calls]
    assert [len(s) for s in kept] == [round(0.6 * n), 700, budget]
    assert len(set(sel.indices.tolist())) == budget
    assert set(sel.indices.tolist()) == kept[2] and kept[2] <= kept[1] <= kept[0]


def test_pipeline_stages_equal_running_the_selectors_by_hand(sst2_features):
    stages = [{"name": "kcenter", "keep": 0.5}, {"name": "herding", "params": {"per_class": "balanced"}}]
    sel = get_selector("pipeline", stages=stages).select(sst2_features, 100, seed=8)
    seeds = np.random.default_rng(8).integers(0, 2**63 - 1, size=2)
    first = get_selector("kcenter").select(sst2_features, 1500, int(seeds[0])).indices
    sub = {k: v[first] for k, v in sst2_features.items()}
    second = get_selector("herding", per_class="balanced").select(sub, 100, int(seeds[1])).indices
    np.testing.assert_array_equal(sel.indices, first[second])
    assert np.bincount(sst2_features["label"][sel.indices]).tolist() == [50, 50]


def test_pipeline_params_seeded_and_required():
    pipe = get_selector("pipeline", stages=[{"name": "stratified_coreset", "keep": 0.5},
                                            {"name": "herding"}])
    assert pipe.seeded is False
    assert pipe.required() == ("embedding", "label", "token_count", "flesch_reading_ease")
    params = pipe.params()
    assert params["stages"][0] == {"name": "stratified_coreset", "keep": 0.5, "params": {
        "attributes": ["label", "token_count", "flesch_reading_ease"], "n_bins": 4, "within": "herding", "per_class": "none"}}
    assert get_selector("pipeline", **{k: v for k, v in params.items() if k != "per_class"}) == pipe
    seeded = get_selector("pipeline", stages=[{"name": "herding", "keep": 0.5}, {"name": "kcenter"}])
    assert seeded.seeded is True


def test_pipeline_errors():
    cases = [
        ([], r"Pipeline\.stages must be a non-empty list"),
        ([{"name": "kcenter", "keep": 0.5}], r"Pipeline\.stages\[0\]\.keep must be absent on the last stage"),
        ([{"name": "kcenter"}, {"name": "herding"}], r"Pipeline\.stages\[0\]\.keep must be a fraction in \(0, 1\] or a row count >= 1; got None"),
        ([{"name": "kcenter", "keep": 1.5}, {"name": "herding"}], r"stages\[0\]\.keep must be a fraction"),
        ([{"name": "kcenter", "keep": True}, {"name": "herding"}], r"stages\[0\]\.keep must be a fraction"),
        ([{"name": "kcentre", "keep": 0.5}, {"name": "herding"}], r"Pipeline\.stages\[0\]: unknown selector 'kcentre'; known:"),
        ([{"name": "kcenter", "params": {"metric": "l1"}, "keep": 0.5}, {"name": "herding"}],
         r"Pipeline\.stages\[0\]: KCenterGreedy\.metric must be"),
        ([{"name": "herding", "params": {"k": 1}}], r"Pipeline\.stages\[0\]: Herding has no parameter"),
        ([{"name": "herding", "keeep": 1}], r"Pipeline\.stages\[0\] must be free of unknown keys \['keeep'\]"),
        (["herding"], r"Pipeline\.stages\[0\] must be a mapping"),
    ]
    for stages, msg in cases:
        with pytest.raises(InvalidParameterError, match=msg) as exc:
            get_selector("pipeline", stages=stages)
        assert "\n" not in str(exc.value)
    pipe = get_selector("pipeline", stages=[{"name": "kcenter", "keep": 0.1}, {"name": "herding"}])
    feats = {"embedding": np.random.default_rng(0).normal(size=(100, 3))}
    with pytest.raises(InsufficientStageError, match=r"stages\[0\] \(kcenter, keep=0\.1\) would keep 10 "
                                                     r"of the 100 rows it receives; it must keep between budget=20"):
        pipe.select(feats, 20, 0)
    big = get_selector("pipeline", stages=[{"name": "kcenter", "keep": 500}, {"name": "herding"}])
    with pytest.raises(InsufficientStageError, match=r"would keep 500 of the 100 rows"):
        big.select(feats, 20, 0)


@pytest.mark.parametrize(("name", "params", "rows"), [
    ("kcenter", {"metric": "cosine"}, "budget"),
    ("kmeans", {"n_clusters": 20}, "budget"),
    ("grand", {"hidden": 8, "n_inits": 2}, "all"),
    ("el2n", {"hidden": 8, "n_runs": 1, "keep": "lowest"}, "all"),
    ("herding", {}, "budget"),
    ("stratified_coreset", {}, "budget"),
    ("perplexity", {"rank_by": "token_count"}, "budget"),
])
def test_fusion_with_one_member_reproduces_it(sst2_features, name, params, rows):
    alone = get_selector(name, **params).select(sst2_features, 200, seed=4)
    fused = get_selector("fusion", members=[{"name": name, "params": params, "weight": 1.0,
                                             "rows": rows}]).select(sst2_features, 200, seed=4)
    np.testing.assert_array_equal(fused.indices, alone.indices)
    n = len(sst2_features["label"])
    np.testing.assert_allclose(fused.scores, (n - np.arange(200)) / n)


def test_fusion_by_score_direction_and_weights(sst2_features):
    n = len(sst2_features["label"])
    ppl = sst2_features["perplexity"]
    tok = sst2_features["token_count"]
    member = {"name": "perplexity", "params": {"rank_by": "perplexity", "q_low": 0, "q_high": 1},
              "by": "score"}
    low = get_selector("fusion", members=[{**member, "descending": False}]).select(sst2_features, 50, 0)
    high = get_selector("fusion", members=[member]).select(sst2_features, 50, 0)
    np.testing.assert_array_equal(low.indices, np.argsort(ppl, kind="stable")[:50])
    np.testing.assert_array_equal(high.indices, np.argsort(-ppl, kind="stable")[:50])
    # Two members by score: fused = weighted mean of rank-normalised values (ties averaged).
    two = get_selector("fusion", members=[
        {**member, "weight": 3.0},
        {"name": "perplexity", "params": {"rank_by": "token_count", "q_low": 0, "q_high": 1},
         "by": "score", "weight": 1.0},
    ]).select(sst2_features, 100, 0)
    from scipy.stats import rankdata

    raw = 3 * rankdata(ppl) + rankdata(tok)  # exact half-integers: ties stay exact
    np.testing.assert_array_equal(two.indices, np.lexsort((np.arange(n), -raw))[:100])
    np.testing.assert_allclose(two.scores, raw[two.indices] / (4 * n))


def test_rank_normalise_ties_and_unranked_rows():
    # 6 rows; rows 4 and 1 ranked with values 2.0, 2.0 (tie), row 0 with 5.0.
    r = rank_normalise(6, np.array([4, 1, 0]), np.array([2.0, 2.0, 5.0]))
    # Unranked rows 2, 3, 5 share ranks 1..3 (mean 2); the tie shares 4, 5 (4.5); top is 6.
    np.testing.assert_allclose(r * 6, [6, 4.5, 2, 2, 4.5, 2])
    np.testing.assert_allclose(rank_normalise(3, np.array([2, 0, 1]), np.array([np.inf, 1.0, -np.inf])) * 3,
                               [2, 1, 3])


def test_fusion_params_seeded_required_and_errors():
    f = get_selector("fusion", members=[{"name": "herding"}, {"name": "stratified_coreset", "weight": 0.5}])
    assert f.seeded is False
    assert f.required() == ("embedding", "label", "token_count", "flesch_reading_ease")
    assert f.params()["members"][1] == {"name": "stratified_coreset", "weight": 0.5, "by": "order",
                                        "descending": True, "rows": "all", "params": {
                                            "attributes": ["label", "token_count", "flesch_reading_ease"],
                                            "n_bins": 4, "within": "herding", "per_class": "none"}}
    assert get_selector("fusion", members=[{"name": "herding"}, {"name": "el2n"}]).seeded is True
    cases = [
        ([], r"Fusion\.members must be a non-empty list"),
        ([{"name": "herding", "weight": -1}], r"Fusion\.members\[0\]\.weight must be a number >= 0; got -1"),
        ([{"name": "herding", "weight": 0}], r"Fusion\.members must be weighted with at least one weight > 0"),
        ([{"name": "herding", "by": "rank"}], r"Fusion\.members\[0\]\.by must be 'order' or 'score'"),
        ([{"name": "herding", "descending": "yes"}], r"Fusion\.members\[0\]\.descending must be a bool"),
        ([{"name": "herding", "rows": "some"}], r"Fusion\.members\[0\]\.rows must be 'all' or 'budget'"),
        ([{"name": "grand", "params": {"n_inits": 0}}], r"Fusion\.members\[0\]: GraNd\.n_inits must be"),
        ([{"name": "herding", "keep": 0.5}], r"Fusion\.members\[0\] must be free of unknown keys \['keep'\]"),
    ]
    for members, msg in cases:
        with pytest.raises(InvalidParameterError, match=msg):
            get_selector("fusion", members=members)
    feats = {"embedding": np.random.default_rng(0).normal(size=(30, 3)), "label": np.arange(30) % 2}
    with pytest.raises(DataError, match=r"Fusion\.members\[0\] \(random\) returns no scores; use by='order'"):
        get_selector("fusion", members=[{"name": "random", "by": "score"}]).select(feats, 5, 0)


def test_bad_nested_params_fail_at_config_load():
    import yaml

    from dataselect.core.errors import ConfigError
    from dataselect.sweep.study import parse_study

    text = """
name: g
grid: {fractions: [0.1]}
selectors:
  - name: pipeline
    label: quality-diversity-importance
    params:
      stages:
        - {name: perplexity, params: {q_low: 0.1, q_high: 0.9}, keep: 0.5}
        - {name: semantic_lexical, params: {lexical_weight: 0.3}, keep: 0.5}
        - {name: el2n, params: {keep: lowest}}
  - name: fusion
    params:
      members:
        - {name: el2n, weight: 0.5}
        - {name: kcenter, params: {metric: cosine}, rows: budget, weight: 0.5}
"""
    cfg = parse_study(yaml.safe_load(text), check_paths=False)
    assert [s.key for s in cfg.selectors] == ["quality-diversity-importance", "fusion"]
    bad = text.replace("lexical_weight: 0.3", "lexical_weight: 3")
    with pytest.raises(ConfigError, match=r"selectors\[0\]\.params: Pipeline\.stages\[1\]: "
                                          r"SemanticLexical\.lexical_weight must be a number in \[0, 1\]; got 3"):
        parse_study(yaml.safe_load(bad), check_paths=False)
    bad = text.replace("name: kcenter", "name: kcentre")
    with pytest.raises(ConfigError, match=r"selectors\[1\]\.params: Fusion\.members\[1\]: unknown selector 'kcentre'"):
        parse_study(yaml.safe_load(bad), check_paths=False)
