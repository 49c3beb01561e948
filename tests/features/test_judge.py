"""LM-judge log-odds: batched scores equal a direct one-prompt-at-a-time computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from dataselect.core.config import FeaturesConfig
from dataselect.core.errors import ModelError
from dataselect.core.models import load_causal_lm, load_tokenizer
from dataselect.features import judge
from dataselect.features.judge import JUDGE_PROMPTS, JudgeBatch, answer_ids, judge_scores


@pytest.fixture(autouse=True)
def one_thread():
    # A 32-wide model gains nothing from threads, and on a busy 2-core machine
    # intra-op threads spin-wait (measured: 100x slower forward passes).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def lm(tiny_qwen):
    return load_tokenizer(tiny_qwen), load_causal_lm(tiny_qwen, "cpu")


def _direct(texts, tok, model, answers=(" Yes", " No")):
    """Whole prompt, no special tokens (no BOS), one at a time: sum of answer-token log-probs."""
    ans = [tok(a, add_special_tokens=False)["input_ids"] for a in answers]
    out = {}
    for flag, template in JUDGE_PROMPTS.items():
        vals = []
        for t in texts:
            p = tok(template.format(text=t), add_special_tokens=False)["input_ids"]
            lps = []
            for a in ans:
                with torch.no_grad():
                    lp = torch.log_softmax(model(input_ids=torch.tensor([p + a])).logits[0].double(), -1)
                lps.append(sum(float(lp[len(p) - 1 + k, a[k]]) for k in range(len(a))))
            vals.append(lps[0] - lps[1])
        out[f"judge_{flag}"] = np.array(vals)
    return out


@pytest.mark.parametrize("batch_size", [1, 7])
def test_batched_equals_direct_log_prob(lm, sample, batch_size):
    tok, model = lm
    texts = sample["text"].tolist()[:12]
    got = judge_scores(texts, tok, model, batch_size=batch_size)
    want = _direct(texts, tok, model)
    assert set(got) == {"judge_ambiguous", "judge_sarcastic"}
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-5)
        assert np.isfinite(got[k]).all() and np.ptp(got[k]) > 0


def test_one_token_answers_share_the_prompt_pass(lm, sample):
    tok, model = lm
    words = [w for w in (" the", " a", " and", " of", " is", " it")
             if len(tok(w, add_special_tokens=False)["input_ids"]) == 1][:2]
    assert len(words) == 2
    texts = sample["text"].tolist()[:10]
    got = judge_scores(texts, tok, model, answers=words, batch_size=4)
    want = _direct(texts, tok, model, answers=words)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-5)


def test_no_bos_is_prepended(lm):
    tok, _ = lm
    prompt = JUDGE_PROMPTS["ambiguous"].format(text="fine")
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert ids[0] != tok.bos_token_id


def test_long_texts_are_cut_to_max_length_tokens(lm):
    tok, model = lm
    long = "good " * 300
    a = judge_scores([long], tok, model, max_length=16)
    cut = long[: tok(long, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"][15][1]]
    b = _direct([cut], tok, model)
    np.testing.assert_allclose(a["judge_sarcastic"], b["judge_sarcastic"], rtol=1e-4, atol=1e-5)


def test_udf_carries_ids_and_answers_must_differ(tiny_qwen, sample):
    udf = JudgeBatch(model=tiny_qwen, max_length=64, batch_size=4, n_threads=1)
    batch = {"id": sample["id"].to_numpy()[:6][::-1], "text": sample["text"].to_numpy(object)[:6][::-1]}
    out = udf(batch)
    np.testing.assert_array_equal(out["id"], batch["id"])
    want = _direct(list(batch["text"]), udf.tokenizer, udf.model)
    np.testing.assert_allclose(out["judge_ambiguous"], want["judge_ambiguous"], rtol=1e-4, atol=1e-5)

    class Same:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [5, 6]}

    with pytest.raises(ModelError, match=r"does not tell ' Yes' from ' No' \(\[5, 6\] vs \[5, 6\]\)"):
        answer_ids(Same())


def test_family_through_the_runner_and_prompts_in_the_key(tiny_qwen, sample, tmp_path, monkeypatch):
    from dataselect.features import compute_features
    from dataselect.features.runner import FAMILIES, _key

    cfg = FeaturesConfig(encoder="minilm", perplexity_model=tiny_qwen, llm_judge=True, text_metrics=False,
                         max_length=64, shard_size=8)
    frame = pd.DataFrame({"id": sample["id"][:12], "text": sample["text"][:12], "label": sample["label"][:12]})
    monkeypatch.setattr("dataselect.features.runner._cpu_share", lambda cfg, engine: (1, 1))
    table = compute_features(frame, cfg, tmp_path, which={"llm_judge"}, progress=False, engine="local")
    tok, model = load_tokenizer(tiny_qwen), load_causal_lm(tiny_qwen, "cpu")
    want = _direct(frame["text"].tolist(), tok, model)
    np.testing.assert_allclose(table["judge_sarcastic"], want["judge_sarcastic"], rtol=1e-4, atol=1e-5)
    k0 = _key(FAMILIES["llm_judge"](cfg, "cpu"), "fp", 8)
    monkeypatch.setitem(judge.JUDGE_PROMPTS, "sarcastic", "Text: {text}\nSarcastic?\nAnswer:")
    assert _key(FAMILIES["llm_judge"](cfg, "cpu"), "fp", 8) != k0
    # Own model setting wins over the perplexity LM.
    assert judge.judge_model(cfg.model_copy(update={"judge_model": "elsewhere"})) == "elsewhere"
