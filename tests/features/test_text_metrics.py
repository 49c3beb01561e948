"""Text metrics: equal textstat's own functions, MATTR/MTLD vs brute force, offline."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dataselect.features.text_metrics import (
    COLUMNS,
    TextMetricsBatch,
    mattr,
    mtld,
    text_metrics,
    type_token_ratio,
    words,
)


def test_matches_textstat_on_sst2_rows(sample):
    import textstat

    texts = sample["text"].tolist()[:40]
    got = text_metrics(texts)
    assert set(got) == set(COLUMNS)
    textstat.set_rounding_points(None)
    try:
        for i, t in enumerate(texts):
            assert got["token_count"][i] == textstat.lexicon_count(t)
            assert got["char_count"][i] == textstat.char_count(t)
            assert got["syllable_count"][i] == textstat.syllable_count(t)
            assert got["sentence_count"][i] == textstat.sentence_count(t)
            assert got["flesch_reading_ease"][i] == pytest.approx(textstat.flesch_reading_ease(t))
            assert got["avg_word_len"][i] == pytest.approx(textstat.avg_character_per_word(t))
            ws = words(t)
            assert len(ws) == textstat.lexicon_count(t)
            assert got["type_token_ratio"][i] == pytest.approx(len(set(ws)) / len(ws))
    finally:
        textstat.set_rounding_points(None)


def _mattr_brute(tokens, w):
    if len(tokens) < w:
        return len(set(tokens)) / len(tokens)
    return float(np.mean([len(set(tokens[i:i + w])) / w for i in range(len(tokens) - w + 1)]))


@pytest.mark.parametrize("seed", range(4))
def test_mattr_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    tokens = [f"w{k}" for k in rng.integers(0, 15, size=int(rng.integers(5, 120)))]
    assert mattr(tokens, window=10) == pytest.approx(_mattr_brute(tokens, 10))
    assert mattr(tokens[:4], window=10) == pytest.approx(type_token_ratio(tokens[:4]))


def test_mtld_hand_computed():
    # Forward: "a b a b" -> TTR 1, 1, .667 (<= .72: factor at word 3), then "b" -> TTR 1
    # -> partial (1-1)/(1-.72) = 0 -> factors 1 -> 4/1. Backward identical by symmetry.
    assert mtld(["a", "b", "a", "b"]) == pytest.approx(4.0)
    # One factor after 3 words then a partial run "a b" (TTR 1 -> 0) and "a a" patterns:
    toks = ["a", "a", "b", "c", "d"]  # fwd: "a a" TTR .5 -> factor; "b c d" TTR 1 -> 0 => 5/1
    assert mtld(toks) == pytest.approx((5 / 1 + 5 / 1) / 2)
    long = ["x"] * 100  # every 2nd word closes a factor: 50 factors -> MTLD 2
    assert mtld(long) == pytest.approx(2.0)
    assert mtld([]) == 0.0
    # All-distinct short text: factor count floored at 1 -> its length.
    assert mtld(list("abcdefg")) == pytest.approx(7.0)


def test_mtld_partial_factor():
    # 10 words, TTR never reaches .72 until ... construct: a b c d e a b c d e
    toks = list("abcdeabcde")
    # fwd TTR: 1,1,1,1,1,5/6=.833,5/7=.714 -> factor at word 7; rest "c d e" TTR 1 -> partial 0
    assert mtld(toks) == pytest.approx(10.0)
    toks2 = list("abcdeabcdeaa")  # after factor: "c d e a a" TTR 4/5=.8 -> partial .2/.28
    partial = (1 - 0.8) / (1 - 0.72)
    fwd = 12 / (1 + partial)
    assert mtld(toks2) == pytest.approx((fwd + 12 / max(_factors_rev(toks2), 1)) / 2)


def _factors_rev(toks):
    from dataselect.features.text_metrics import _mtld_factors

    return _mtld_factors(toks[::-1], 0.72)


def test_empty_and_punctuation_only_text():
    got = text_metrics(["", "-- ."])
    for c in COLUMNS:
        assert np.isfinite(got[c]).all(), c
    assert got["token_count"].tolist() == [0, 0]
    import textstat

    t = "It 's A film , isn't it ?"
    assert words(t) == ["it", "'s", "a", "film", "isn't", "it"]
    assert len(words(t)) == textstat.lexicon_count(t)


def test_udf_carries_ids():
    out = TextMetricsBatch()({"id": np.array([5, 3]), "text": np.array(["a b c", "a a"], dtype=object)})
    assert out["id"].tolist() == [5, 3] and out["type_token_ratio"].tolist() == [1.0, 0.5]


def test_runs_offline_without_nltk_or_network(tmp_path):
    """textstat 0.7.8 must not fetch NLTK data: no nltk, no sockets, empty data dirs."""
    code = textwrap.dedent("""
        import socket, sys
        sys.modules["nltk"] = None  # any `import nltk` raises ImportError
        def _no_net(*a, **k):
            raise OSError("network access attempted")
        socket.socket.connect = _no_net
        socket.create_connection = _no_net
        socket.getaddrinfo = _no_net
        from dataselect.features.text_metrics import text_metrics
        out = text_metrics(["a wonderfully heartfelt film .", "dull"])
        assert out["syllable_count"].tolist() == [8, 1], out
        print("ok")
    """)
    env = {**os.environ, "NLTK_DATA": str(tmp_path / "nltk"), "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "1", "no_proxy": "*", "http_proxy": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
