"""MLM pseudo-perplexity (Salazar et al. 2020) vs a naive one-mask-at-a-time loop."""

from __future__ import annotations

import math

import numpy as np
import torch

from dataselect.core.models import load_masked_lm, load_tokenizer
from dataselect.features.pseudo_perplexity import PseudoPerplexityBatch, pseudo_log_likelihoods


def _naive(texts, tok, model):
    out = []
    for t in texts:
        enc = tok(t, return_special_tokens_mask=True)
        ids, special = enc["input_ids"], enc["special_tokens_mask"]
        pll, n = 0.0, 0
        for i, s in enumerate(special):
            if s:
                continue
            x = torch.tensor([ids])
            x[0, i] = tok.mask_token_id
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=x).logits[0, i].double(), -1)
            pll += logp[ids[i]].item()
            n += 1
        out.append(math.exp(-pll / n) if n else math.nan)
    return np.array(out)


def test_batched_matches_naive(tiny_mlm, sample):
    tok, model = load_tokenizer(tiny_mlm), load_masked_lm(tiny_mlm, "cpu")
    texts = sample["text"].tolist()[:6] + ["", "ok"]
    got = pseudo_log_likelihoods(texts, tok, model, batch_size=16)
    want = _naive(texts, tok, model)
    assert np.isnan(got["pseudo_perplexity"][-2]) and got["mlm_token_count"][-2] == 0
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got["pseudo_perplexity"][ok], want[ok], rtol=1e-4)
    np.testing.assert_allclose(got["mlm_mean_nll"][ok], np.log(want[ok]), rtol=1e-4)


def test_udf_carries_ids(tiny_mlm, sample):
    udf = PseudoPerplexityBatch(model=tiny_mlm, batch_size=32)
    ids = sample["id"].to_numpy()[:4][::-1]
    out = udf({"id": ids, "text": sample["text"].to_numpy(object)[:4][::-1]})
    np.testing.assert_array_equal(out["id"], ids)
    np.testing.assert_allclose(out["pseudo_perplexity"], _naive(list(sample["text"][:4][::-1]), udf.tokenizer, udf.model),
                               rtol=1e-4)


def test_masked_position_head_matches_full_forward(tiny_mlm, sample, monkeypatch):
    """Scoring only the masked position gives the full forward's numbers (ModernBERT and BERT layouts)."""
    import transformers

    from dataselect.features import pseudo_perplexity as pp

    tok = load_tokenizer(tiny_mlm)
    torch.manual_seed(0)
    bert = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, pad_token_id=tok.pad_token_id)).eval()
    texts = sample["text"].tolist()[:5]
    for model in (load_masked_lm(tiny_mlm, "cpu"), bert):
        assert pp.masked_position_head(model) is not None
        fast = pseudo_log_likelihoods(texts, tok, model, batch_size=8)
        with monkeypatch.context() as m:
            m.setattr(pp, "masked_position_head", lambda _model: None)
            full = pseudo_log_likelihoods(texts, tok, model, batch_size=8)
        np.testing.assert_allclose(fast["mlm_mean_nll"], full["mlm_mean_nll"], rtol=1e-5)


def test_masked_copies_of_several_texts_share_a_pass(tiny_mlm, sample):
    """Copies are packed across texts (not one pass per text) and score as each text alone."""
    tok, model = load_tokenizer(tiny_mlm), load_masked_lm(tiny_mlm, "cpu")
    texts = [t for t in sample["text"].tolist() if 2 <= len(t.split()) <= 6][:10]
    copies = sum(len(tok(t)["input_ids"]) - 2 for t in texts)  # CLS/SEP are never masked
    calls = []
    hook = model.base_model.register_forward_hook(lambda _m, args, kw, _o: calls.append(1), with_kwargs=True)
    try:
        packed = pseudo_log_likelihoods(texts, tok, model, batch_size=64)
    finally:
        hook.remove()
    assert len(calls) == math.ceil(copies / 64) < len(texts)
    alone = [pseudo_log_likelihoods([t], tok, model, batch_size=64) for t in texts]
    for col in ("mlm_mean_nll", "pseudo_perplexity"):
        np.testing.assert_allclose(packed[col], [a[col][0] for a in alone], rtol=1e-5)
    np.testing.assert_array_equal(packed["mlm_token_count"], [a["mlm_token_count"][0] for a in alone])
