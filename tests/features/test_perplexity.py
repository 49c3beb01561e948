"""Batched causal-LM perplexity vs a straightforward unbatched loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dataselect.core.models import load_causal_lm, load_tokenizer
from dataselect.features.perplexity import PerplexityBatch, context_token_id, lm_scores


def _naive(texts, tok, model, max_length=128):
    """One text at a time, no padding: mean NLL over tokens 2..n (BOS/EOS first if n == 1)."""
    out = []
    for t in texts:
        ids = tok(t, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]
        if not ids:
            out.append(math.nan)
            continue
        if len(ids) == 1:
            ids = [context_token_id(tok), *ids]
        x = torch.tensor([ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=x).logits[0].double(), -1)
        out.append(-float(np.mean([logp[i - 1, ids[i]].item() for i in range(1, len(ids))])))
    return np.array(out)


@pytest.fixture(scope="module")
def lm(tiny_qwen):
    return load_tokenizer(tiny_qwen), load_causal_lm(tiny_qwen, "cpu")


@pytest.fixture(scope="module")
def case(lm, sample):
    tok, model = lm
    one = next(w for w in ["the", "a", ",", "film"] if len(tok(w, add_special_tokens=False)["input_ids"]) == 1)
    texts = sample["text"].tolist()[:40] + [one, "", "a " * 200]  # 1 token, empty, truncated
    return texts, _naive(texts, tok, model, max_length=64)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("batch_size", [1, 7])
def test_batched_matches_unbatched_loop(lm, case, side, batch_size):
    tok, model = lm
    texts, want = case
    got = lm_scores(texts, tok, model, max_length=64, batch_size=batch_size, padding_side=side)
    assert np.isnan(got["lm_mean_nll"][-2]) and got["lm_token_count"][-2] == 0
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got["lm_mean_nll"][ok], want[ok], rtol=1e-4)
    np.testing.assert_allclose(got["perplexity"][ok], np.exp(want[ok]), rtol=1e-4)
    assert got["lm_token_count"][-3] == 1 and got["lm_token_count"][-1] == 64
    assert np.isfinite(got["perplexity"][ok]).all()


def test_unsorted_equals_sorted(lm, sample):
    tok, model = lm
    texts = sample["text"].tolist()[:40]
    a = lm_scores(texts, tok, model, batch_size=8, sort_by_length=True)
    b = lm_scores(texts, tok, model, batch_size=8, sort_by_length=False)
    np.testing.assert_allclose(a["lm_mean_nll"], b["lm_mean_nll"], rtol=1e-5)


def test_udf_carries_ids_on_a_local_batch(tiny_qwen, sample):
    udf = PerplexityBatch(model=tiny_qwen, max_length=64, batch_size=4)
    batch = {"id": sample["id"].to_numpy()[:10][::-1], "text": sample["text"].to_numpy(object)[:10][::-1]}
    out = udf(batch)
    np.testing.assert_array_equal(out["id"], batch["id"])
    want = _naive(list(batch["text"]), udf.tokenizer, udf.model, max_length=64)
    np.testing.assert_allclose(out["lm_mean_nll"], want, rtol=1e-4)
