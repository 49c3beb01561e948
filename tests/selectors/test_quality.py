"""Quality selectors on real SST-2 rows: label-noise recovery, formulas, filters, errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dataselect.core.errors import ConfigError, DataError, InsufficientRowsError
from dataselect.selectors import InvalidParameterError, get_selector
from dataselect.selectors.crossfit import crossfit_proba, encode_labels
from dataselect.selectors.score_band import predictive_entropy
from dataselect.sweep.study import parse_study

N_FLIP = 150  # 5 % of the 3000-row sample
FAST = {"C": 0.1}  # stronger L2 converges faster and, on 3000 rows, recovers more flips


@pytest.fixture(scope="module")
def noisy(sst2_features):
    """``sst2_features`` with 5 % of labels flipped at random (seeded)."""
    n = len(sst2_features["label"])
    flip = np.zeros(n, dtype=bool)
    flip[np.random.default_rng(7).choice(n, N_FLIP, replace=False)] = True
    labels = np.where(flip, 1 - sst2_features["label"], sst2_features["label"])
    return {**sst2_features, "label": labels}, flip


def _precision_recall(flagged, flip):
    tp = int((flagged & flip).sum())
    return tp / max(int(flagged.sum()), 1), tp / int(flip.sum())


def test_cleanlab_recovers_flipped_labels(noisy):
    feats, flip = noisy
    sel = get_selector("cleanlab", **FAST)
    flagged, quality = sel.label_issues(feats, seed=0)
    precision, recall = _precision_recall(flagged, flip)
    # Measured: 525 flagged, precision 0.21, recall 0.73; chance precision is 0.05.
    assert precision > 0.14 and recall > 0.6, (precision, recall)
    # The quality score ranks flipped rows low: AUC well above 0.5 (measured 0.87).
    order = np.argsort(quality)
    ranks = np.empty(len(order))
    ranks[order] = np.arange(len(order))
    auc = 1 - (ranks[flip].mean() - (N_FLIP - 1) / 2) / (len(flip) - N_FLIP)
    assert auc > 0.75, auc
    # select() drops exactly the flagged rows and fills from the rest.
    picks = sel.select(feats, 2000, seed=0)
    assert not flagged[picks.indices].any()
    assert picks.info["n_flagged"] == flagged.sum()
    np.testing.assert_allclose(picks.scores, quality[picks.indices])
    ranked = get_selector("cleanlab", fill="quality", **FAST).select(feats, 1000, seed=0)
    assert np.all(np.diff(ranked.scores) <= 0)
    assert not flagged[ranked.indices].any()
    assert ranked.scores.min() >= np.sort(quality[~flagged])[::-1][999] - 1e-12


def test_self_filter_recovers_flipped_labels(noisy):
    feats, flip = noisy
    n = len(flip)
    sel = get_selector("self_filter", **FAST).select(feats, n - N_FLIP, seed=0)
    dropped = np.ones(n, dtype=bool)
    dropped[sel.indices] = False
    precision, _ = _precision_recall(dropped, flip)
    # Measured: precision = recall = 0.39 at 150 dropped; chance is 0.05.
    assert precision > 0.28, precision
    wider = get_selector("self_filter", **FAST).select(feats, n - 2 * N_FLIP, seed=0)
    dropped2 = np.ones(n, dtype=bool)
    dropped2[wider.indices] = False
    precision2, recall2 = _precision_recall(dropped2, flip)
    # Measured at 300 dropped: precision 0.30, recall 0.60.
    assert precision2 > 0.2 and recall2 > 0.45, (precision2, recall2)
    assert np.all(np.diff(sel.scores) <= 0)  # most confident first
    assert 0 < sel.info["oof_accuracy"] < 1


def test_crossfit_is_out_of_fold_and_deterministic(sst2_features):
    x, (_, y) = sst2_features["embedding"][:600], encode_labels("T", sst2_features["label"][:600], 5)
    a, _ = crossfit_proba(x, y, n_folds=5, seed=3, C=0.1)
    b, _ = crossfit_proba(x, y, n_folds=5, seed=3, C=0.1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a.sum(1), 1)
    # A second implementation of one fold: the row's probability comes from a
    # head that never saw it.
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    train, test = next(StratifiedKFold(5, shuffle=True, random_state=3).split(x, y))
    mu, sd = x[train].mean(0, dtype=np.float64), x[train].std(0, dtype=np.float64) + 1e-12
    head = LogisticRegression(C=0.1, max_iter=100).fit((x[train] - mu) / sd, y[train])
    np.testing.assert_allclose(a[test], head.predict_proba((x[test] - mu) / sd), rtol=1e-6, atol=1e-9)
    with pytest.raises(DataError, match=r"T\.n_folds must be at most the smallest class size; class 1 has 3"):
        encode_labels("T", np.array([0] * 20 + [1] * 3), 5)
    with pytest.raises(DataError, match="needs at least 2 classes"):
        encode_labels("T", np.zeros(20), 5)


def test_crossfit_memo_reuses_only_identical_inputs(sst2_features, monkeypatch):
    from dataselect.selectors import crossfit, memo

    monkeypatch.setattr(memo, "_CACHE", {})
    calls = []
    real = crossfit._crossfit
    monkeypatch.setattr(crossfit, "_crossfit", lambda *a, **k: calls.append(1) or real(*a, **k))
    x, (_, y) = sst2_features["embedding"][:300], encode_labels("T", sst2_features["label"][:300], 5)
    a, _ = crossfit_proba(x, y, seed=1)
    b, _ = crossfit_proba(x.copy(), y.copy(), seed=1)  # equal content, other buffers: a hit
    assert len(calls) == 1 and b is a and not a.flags.writeable
    crossfit_proba(x, y, seed=2)
    x2 = x.copy()
    x2[0, 0] += 1e-3
    c, _ = crossfit_proba(x2, y, seed=1)
    assert len(calls) == 3 and not np.array_equal(a[0], c[0])


def test_entropy_matches_its_formula_and_keeps_high_low_band(sst2_features):
    p = np.array([[0.5, 0.5], [1.0, 0.0], [0.9, 0.1], [0.2, 0.3 + 0.5]])
    want = [np.log(2), 0.0, -(0.9 * np.log(0.9) + 0.1 * np.log(0.1)), -(0.2 * np.log(0.2) + 0.8 * np.log(0.8))]
    np.testing.assert_allclose(predictive_entropy(p), want)
    feats = {k: sst2_features[k][:900] for k in ("embedding", "label")}
    _, y = encode_labels("T", feats["label"], 5)
    fold_seed = int(np.random.default_rng(4).integers(2**31 - 1))  # as the selector draws it
    h = predictive_entropy(crossfit_proba(feats["embedding"], y, n_folds=5, seed=fold_seed, C=0.1)[0])
    high = get_selector("entropy", **FAST).select(feats, 100, seed=4)
    np.testing.assert_allclose(high.scores, h[high.indices])
    assert high.scores.min() >= np.sort(h)[-100] and np.all(np.diff(high.scores) <= 0)
    low = get_selector("entropy", keep="low", **FAST).select(feats, 100, seed=4)
    np.testing.assert_allclose(-low.scores, h[low.indices])
    assert h[low.indices].max() <= np.sort(h)[99]
    band = get_selector("entropy", keep="band", q_low=0.25, q_high=0.75, **FAST).select(feats, 100, seed=4)
    lo, hi = np.quantile(h, [0.25, 0.75])
    assert ((h[band.indices] >= lo) & (h[band.indices] <= hi)).all()


def test_wordpiece_ratio_keeps_high_low_band():
    r = np.array([1.0, 3.0, 2.0, 1.5, 2.5, 1.2, 1.0, 4.0])
    feats = {"subword_ratio": r}
    assert get_selector("wordpiece_ratio", keep="high").select(feats, 3, 0).indices.tolist() == [7, 1, 4]
    assert get_selector("wordpiece_ratio", keep="low").select(feats, 3, 0).indices.tolist() == [0, 6, 5]
    assert get_selector("wordpiece_ratio", keep="high").seeded is False
    band = get_selector("wordpiece_ratio", q_low=0.25, q_high=0.75).select(feats, 3, 0)
    assert set(band.indices.tolist()) <= {2, 3, 4, 5}
    with pytest.raises(InsufficientRowsError, match=r"WordpieceRatio: only 4 of 8 rows"):
        get_selector("wordpiece_ratio", q_low=0.25, q_high=0.75).select(feats, 5, 0)


def test_pseudo_perplexity_reuses_the_perplexity_band():
    rng = np.random.default_rng(0)
    ppl = rng.lognormal(size=200)
    a = get_selector("pseudo_perplexity", q_low=0.2, q_high=0.8).select({"pseudo_perplexity": ppl}, 50, 3)
    b = get_selector("perplexity", q_low=0.2, q_high=0.8).select({"perplexity": ppl}, 50, 3)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert get_selector("pseudo_perplexity").required() == ("pseudo_perplexity",)
    assert get_selector("pseudo_perplexity", rank_by="pseudo_perplexity").required() == ("pseudo_perplexity",)
    with pytest.raises(InsufficientRowsError, match="rows have pseudo_perplexity in"):
        get_selector("pseudo_perplexity", q_low=0.45, q_high=0.55).select({"pseudo_perplexity": ppl}, 100, 0)


def test_llm_judge_excludes_flagged_rows():
    amb = np.array([-2.0, 0.5, -1.0, -3.0, 2.0, -0.5])
    sar = np.array([-1.0, -2.0, 0.1, -4.0, -1.0, -0.2])
    feats = {"judge_ambiguous": amb, "judge_sarcastic": sar}
    sel = get_selector("llm_judge").select(feats, 3, 0)
    assert set(sel.indices.tolist()) == {0, 3, 5} and sel.info["n_flagged"] == 3
    ranked = get_selector("llm_judge", fill="score").select(feats, 3, 0)
    assert ranked.indices.tolist() == [3, 0, 5]
    np.testing.assert_allclose(ranked.scores, [3.0, 1.0, 0.2])
    only_amb = get_selector("llm_judge", sarcastic_max=None, ambiguous_max=1.0)
    assert only_amb.required() == ("judge_ambiguous",)
    assert 2 in only_amb.select({"judge_ambiguous": amb}, 5, 0).indices
    with pytest.raises(InsufficientRowsError, match=r"only 3 of 6 rows are not flagged \(judge_ambiguous > 0"):
        get_selector("llm_judge").select(feats, 4, 0)


def test_consistency_drops_rows_whose_prediction_flips(sst2_features):
    x, labels = sst2_features["embedding"][:800], sst2_features["label"][:800]
    n, d = x.shape
    far = {c: x[labels == c].mean(0) * 3 - x.mean(0) * 2 for c in (0, 1)}  # deep in class c
    fragile = np.zeros(n, dtype=bool)
    fragile[np.random.default_rng(0).choice(n, 80, replace=False)] = True
    variants = np.repeat(x[:, None, :], 4, axis=1).copy()
    for i in np.flatnonzero(fragile):
        # Three of four variants land deep in the class the original is not in.
        variants[i, :3] = far[1 - labels[i]] + 0.01 * x[i]
    feats = {"embedding": x, "label": labels, "eda_embedding": variants.reshape(n, 4 * d)}
    _, y = encode_labels("T", labels, 5)
    seed = int(np.random.default_rng(0).integers(2**31 - 1))
    proba, var = crossfit_proba(x, y, n_folds=5, seed=seed, C=0.1, also=variants)
    flips = (var.argmax(-1) != proba.argmax(-1)[:, None]).sum(1)
    want_kept = flips < 2
    sel = get_selector("consistency", **FAST).select(feats, 600, seed=0)
    assert want_kept[sel.indices].all() and sel.info["n_dropped"] == (~want_kept).sum()
    # Rows whose prediction survives untouched variants are kept; the planted
    # fragile rows whose original prediction is the given label are dropped.
    assert not want_kept[fragile & (proba.argmax(1) == y)].any()
    assert (flips[~fragile] == 0).all()
    stable = get_selector("consistency", fill="stable", **FAST).select(feats, 600, seed=0)
    assert np.all(np.diff(stable.scores) <= 1e-12) and stable.scores.max() == pytest.approx(1.0)
    with pytest.raises(InvalidParameterError, match=r"ConsistencyFilter\.min_flips must be at most the 4 variants"):
        get_selector("consistency", min_flips=5).select(feats, 10, 0)
    with pytest.raises(DataError, match=r"eda_embedding'\] must be \(n, v \* 384\)"):
        get_selector("consistency").select({**feats, "eda_embedding": np.zeros((n, 100))}, 10, 0)


@pytest.mark.parametrize(("name", "bad", "field"), [
    ("cleanlab", {"filter_by": "nope"}, "filter_by"), ("cleanlab", {"fill": "best"}, "fill"),
    ("cleanlab", {"quality": "x"}, "quality"), ("cleanlab", {"n_folds": 1}, "n_folds"),
    ("cleanlab", {"C": 0}, "C"), ("self_filter", {"keep": "top"}, "keep"),
    ("self_filter", {"q_low": 0.8, "q_high": 0.5}, "q_high"), ("self_filter", {"n_folds": 2.0}, "n_folds"),
    ("entropy", {"q_low": -0.1}, "q_low"), ("entropy", {"C": float("nan")}, "C"),
    ("wordpiece_ratio", {"keep": "mid"}, "keep"), ("consistency", {"min_flips": 0}, "min_flips"),
    ("consistency", {"fill": "x"}, "fill"), ("llm_judge", {"ambiguous_max": "high"}, "ambiguous_max"),
    ("llm_judge", {"ambiguous_max": None, "sarcastic_max": None}, "ambiguous_max"),
    ("llm_judge", {"fill": "best"}, "fill"), ("pseudo_perplexity", {"q_low": 2}, "q_low"),
])
def test_bad_params_are_one_line_and_name_the_field(name, bad, field):
    with pytest.raises(InvalidParameterError) as exc:
        get_selector(name, **bad)
    msg = str(exc.value)
    assert f".{field} must be" in msg and "\n" not in msg


def test_head_selectors_refuse_one_class_and_tiny_classes():
    feats = {"embedding": np.random.default_rng(0).normal(size=(30, 3)), "label": np.r_[np.zeros(27), np.ones(3)]}
    for name in ("cleanlab", "self_filter", "entropy"):
        with pytest.raises(DataError, match=r"\.n_folds must be at most the smallest class size; class 1\.0 has 3"):
            get_selector(name).select(feats, 5, 0)
    with pytest.raises(DataError, match="at least 2 classes"):
        get_selector("self_filter", per_class="proportional").select(feats, 5, 0)


@pytest.mark.parametrize("name", ["llm_judge", "consistency"])
def test_config_refuses_selector_whose_family_is_off(name):
    raw = {"name": "t", "dataset": {"source": "x"}, "features": {"encoder": "minilm"},
           "selectors": [{"name": "random"}, {"name": name}], "grid": {"fractions": [0.1]}}
    field = {"llm_judge": "features.llm_judge", "consistency": "features.consistency_variants"}[name]
    with pytest.raises(ConfigError, match=rf"^selectors\[1\] \('{name}'\) reads feature '\w+': set {field}"):
        parse_study(raw, check_paths=False)
    on = {"llm_judge": {"llm_judge": True}, "consistency": {"consistency_variants": 4}}[name]
    raw["features"] = {**raw["features"], **on}
    parse_study(raw, check_paths=False)
    raw["features"] = {"encoder": "minilm", "perplexity_model": None, "llm_judge": True}
    with pytest.raises(ConfigError, match="llm_judge: true needs judge_model or perplexity_model"):
        parse_study(raw, check_paths=False)


_CHILD = textwrap.dedent("""
    import sys, numpy as np
    from dataselect.selectors import get_selector
    f = {"embedding": np.load(sys.argv[1]), "label": np.load(sys.argv[2])}
    for name in ["cleanlab", "self_filter", "entropy"]:
        sys.stdout.write(get_selector(name, C=0.1).select(f, 300, 5).indices.tobytes().hex() + "\\n")
""")


def test_same_picks_across_processes(sst2_features, tmp_path):
    x, y = sst2_features["embedding"][:1000], sst2_features["label"][:1000]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    child = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                           capture_output=True, text=True, check=True).stdout.split()
    here = [get_selector(n, C=0.1).select({"embedding": x, "label": y}, 300, 5).indices.tobytes().hex()
            for n in ["cleanlab", "self_filter", "entropy"]]
    assert child == here
    a = get_selector("self_filter", keep="band", q_low=0.1, q_high=0.9, C=0.1)
    f = {"embedding": x, "label": y}
    assert not np.array_equal(np.sort(a.select(f, 300, 1).indices), np.sort(a.select(f, 300, 2).indices))


@pytest.mark.parametrize(("selector", "features", "field"), [
    ({"name": "metric_match"}, {"text_metrics": False}, "features.text_metrics"),
    ({"name": "metric_match", "params": {"metrics": ["mtld"]}}, {"text_metrics": False}, "features.text_metrics"),
    ({"name": "perplexity"}, {"perplexity_model": None}, "features.perplexity_model"),
])
def test_config_refuses_text_metric_and_perplexity_readers_without_their_family(selector, features, field):
    """Issue 33: metric_match with text metrics off passed preflight and failed in the select stage."""
    raw = {"name": "t", "dataset": {"source": "x"}, "features": {"encoder": "minilm", **features},
           "target": {"split": "validation"},
           "selectors": [{"name": "random"}, selector], "grid": {"fractions": [0.1]}}
    with pytest.raises(ConfigError, match=rf"^selectors\[1\] \('{selector['name']}'\) reads feature '\w+': set {field}"):
        parse_study(raw, check_paths=False)
