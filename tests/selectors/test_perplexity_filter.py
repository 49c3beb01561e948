"""Perplexity band filter: picks in band, ranking honoured, narrow band is an error."""

from __future__ import annotations

import numpy as np
import pytest

from dataselect.core.errors import InsufficientRowsError
from dataselect.selectors import FeatureError, InvalidParameterError, get_selector


def _band(ppl, lo, hi):
    qlo, qhi = np.quantile(ppl, [lo, hi])
    return (ppl >= qlo) & (ppl <= qhi)


def test_random_picks_lie_in_quantile_band(sst2_features):
    ppl = sst2_features["perplexity"]
    sel = get_selector("perplexity", q_low=0.2, q_high=0.7).select(sst2_features, 500, 0)
    in_band = _band(ppl, 0.2, 0.7)
    assert in_band[sel.indices].all()
    assert len(set(sel.indices.tolist())) == 500
    assert sel.info["n_in_band"] == in_band.sum()
    np.testing.assert_array_equal(sel.scores, ppl[sel.indices])


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("rank_by", ["token_count", "type_token_ratio", "perplexity"])
def test_ranking_order_is_honoured(sst2_features, rank_by, descending):
    sel = get_selector("perplexity", rank_by=rank_by, descending=descending).select(
        sst2_features, 400, 0
    )
    key = sst2_features[rank_by]
    band = np.flatnonzero(_band(sst2_features["perplexity"], 0.1, 0.9))
    picked = key[sel.indices]
    rest = key[np.setdiff1d(band, sel.indices)]
    assert np.isin(sel.indices, band).all()
    if descending:
        assert np.all(np.diff(picked) <= 0) and picked.min() >= rest.max()
    else:
        assert np.all(np.diff(picked) >= 0) and picked.max() <= rest.min()
    np.testing.assert_array_equal(sel.scores, picked)


def test_ties_go_to_lower_row():
    ppl = np.linspace(1, 2, 10)
    tc = np.array([3, 1, 1, 2, 1, 5, 5, 1, 2, 2], dtype=float)
    sel = get_selector("perplexity", q_low=0, q_high=1, rank_by="token_count").select(
        {"perplexity": ppl, "token_count": tc}, 5, 0
    )
    assert sel.indices.tolist() == [1, 2, 4, 7, 3]


def test_too_narrow_band_is_an_error(sst2_features):
    with pytest.raises(InsufficientRowsError, match=r"only \d+ of 3000 rows.*budget=1000"):
        get_selector("perplexity", q_low=0.45, q_high=0.55).select(sst2_features, 1000, 0)


def test_bad_params_and_missing_rank_feature():
    for bad, field in [({"q_low": -0.1}, "q_low"), ({"q_high": 1.5}, "q_high"),
                       ({"q_low": 0.6, "q_high": 0.5}, "q_high"), ({"rank_by": ""}, "rank_by"),
                       ({"rank_by": "embedding"}, "rank_by"), ({"descending": "yes"}, "descending"),
                       ({"q_low": float("nan")}, "q_low")]:
        with pytest.raises(InvalidParameterError, match=rf"PerplexityFilter\.{field} must be"):
            get_selector("perplexity", **bad)
    with pytest.raises(FeatureError, match="flesch_reading_ease"):
        get_selector("perplexity", rank_by="flesch_reading_ease").select(
            {"perplexity": np.ones(5)}, 2, 0
        )
