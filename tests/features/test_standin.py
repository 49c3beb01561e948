"""Offline stand-ins: tokenizer specials, loadable tiny models, cached training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dataselect.core import standin
from dataselect.core.errors import UserError
from dataselect.core.models import describe_model, load_causal_lm, load_masked_lm, load_tokenizer


def test_tokenizer_specials(sst2_train):
    tok = standin.train_tokenizer(sst2_train["text"].tolist()[:500], vocab_size=400, kind="modernbert")
    for name in ("pad", "bos", "eos", "cls", "sep", "mask", "unk"):
        assert getattr(tok, f"{name}_token_id") is not None, name
    ids = tok("a gorgeous film")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    causal = standin.train_tokenizer(sst2_train["text"].tolist()[:500], vocab_size=400, kind="qwen3")
    assert causal.bos_token_id not in causal("a gorgeous film")["input_ids"]  # Qwen-style: no BOS
    assert causal.decode(causal("naïve café")["input_ids"]) == "naïve café"  # byte-level: no OOV


def test_tiny_models_load_through_models_py(tiny_qwen, tiny_mlm):
    lm, mlm = load_causal_lm(tiny_qwen, "cpu"), load_masked_lm(tiny_mlm, "cpu")
    assert type(lm).__name__ == "Qwen3ForCausalLM" and type(mlm).__name__ == "ModernBertForMaskedLM"
    assert lm.config.num_hidden_layers == 2 and lm.config.hidden_size == 32
    assert describe_model(tiny_qwen)["standin"] is True
    tok = load_tokenizer(tiny_qwen)
    x = torch.tensor([tok("a fine film")["input_ids"]])
    with torch.no_grad():
        assert torch.isfinite(lm(input_ids=x).logits).all()


def test_train_standin_is_cached_and_learns(tmp_path, sst2_train, monkeypatch):
    texts = sst2_train["text"].tolist()[:300]
    kw = dict(kind="qwen3", steps=30, vocab_size=300, hidden_size=32, batch_size=16, max_length=32,
              learning_rate=1e-2)
    planned = standin.train_standin_lm(texts, tmp_path, **kw, build=False)  # what `plan` asks
    assert not planned.exists()
    path = standin.train_standin_lm(texts, tmp_path, **kw)
    assert path == planned and path.name.startswith("standin-qwen3-") and (path / "config.json").is_file()
    info = json.loads((path / "standin.json").read_text())
    assert info["final_loss"] < np.log(300)  # below a uniform guess over the vocabulary
    assert not list(tmp_path.glob(".tmp-*"))
    monkeypatch.setattr(standin, "_train", lambda *a, **k: pytest.fail("retrained a cached stand-in"))
    assert standin.train_standin_lm(texts, tmp_path, **kw) == path
    with pytest.raises(pytest.fail.Exception):  # a different corpus is a different stand-in
        standin.train_standin_lm(texts[:-1], tmp_path, **kw)


def test_train_standin_mlm(tmp_path, sst2_train):
    path = standin.train_standin_lm(sst2_train["text"].tolist()[:200], tmp_path, kind="modernbert", steps=3,
                                    vocab_size=300, hidden_size=32, batch_size=8, max_length=32)
    assert type(load_masked_lm(str(path), "cpu")).__name__ == "ModernBertForMaskedLM"


def test_bad_kind():
    with pytest.raises(UserError, match="kind"):
        standin.train_tokenizer(["a"], kind="gpt2")
