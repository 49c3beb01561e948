"""Causal-LM perplexity of each text, a difficulty/quality signal.

Perplexity-based pruning keeps or drops examples by a reference LM's
perplexity (Marion et al., "When Less is More: Investigating Data Pruning for
Pretraining LLMs at Scale", 2023; Ankner et al., "Perplexed by Perplexity",
2024). Default scorer: ``Qwen/Qwen3-1.7B-Base``; offline, a stand-in from
:mod:`dataselect.core.standin`.

Conventions
-----------
* No start token is prepended: Qwen3's tokenizer adds none, and a BOS the
  model never saw in pre-training would distort the first prediction. The
  first token is context only; the NLL is averaged over tokens 2..n::

      lm_mean_nll = -1/(n-1) * sum_{t=2..n} log p(x_t | x_<t),  perplexity = exp(lm_mean_nll)

* Texts of exactly one token have nothing to score given that rule; for them
  alone a document-boundary token (the tokenizer's BOS, else its EOS — for
  Qwen3 ``<|endoftext|>``, which separates documents in pre-training) is
  prepended and the single real token is scored. ``lm_token_count`` stays 1,
  so these rows can be found and dropped downstream.
* Empty texts (0 tokens) get NaN ``perplexity``/``lm_mean_nll`` and
  ``lm_token_count`` 0; the only NaNs this family emits.
* Texts are truncated to ``max_length`` tokens before scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dataselect.core.config import FeaturesConfig
from dataselect.features._common import (
    FamilySpec,
    ModelBatch,
    length_batches,
    torch_dtype_name,
)

COLUMNS = ("perplexity", "lm_mean_nll", "lm_token_count")


def context_token_id(tokenizer: Any) -> int:
    """The boundary token prepended to one-token texts: BOS, else EOS."""
    tid = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if tid is None:
        from dataselect.core.errors import ModelError

        raise ModelError("perplexity: tokenizer has neither a BOS nor an EOS token to score one-token texts")
    return int(tid)


def lm_sequences(texts: Sequence[str], tokenizer: Any, max_length: int) -> tuple[list[list[int]], np.ndarray]:
    """Token id sequences to score and each text's own token count.

    No special tokens are added; one-token texts get :func:`context_token_id` in front.
    """
    enc = tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_length)
    ctx = context_token_id(tokenizer)
    seqs, counts = [], np.empty(len(texts), dtype=np.int64)
    for i, ids in enumerate(enc["input_ids"]):
        counts[i] = len(ids)
        seqs.append([ctx, *ids] if len(ids) == 1 else list(ids))
    return seqs, counts


def lm_scores(
    texts: Sequence[str],
    tokenizer: Any,
    model: Any,
    *,
    max_length: int = 128,
    batch_size: int = 16,
    padding_side: str | None = None,
    sort_by_length: bool = True,
) -> dict[str, np.ndarray]:
    """Per-text mean NLL, perplexity and token count; plain function, no Ray.

    Parameters
    ----------
    texts : sequence of str
        n texts.
    tokenizer, model
        A HF tokenizer and causal LM (``AutoModelForCausalLM``).
    max_length : int, default=128
        Truncation length in tokens.
    batch_size : int, default=16
        Sequences per forward pass.
    padding_side : {"left", "right"}, optional
        Default: the tokenizer's. Either side gives the same numbers: position
        ids are derived from the attention mask, so every sequence sees
        positions 0..n-1 wherever its padding sits.
    sort_by_length : bool, default=True
        Batch sequences of similar length together to minimise padding.

    Returns
    -------
    dict
        ``lm_mean_nll`` (n,) float64, ``perplexity`` (n,) float64,
        ``lm_token_count`` (n,) int64. See the module notes for 0/1-token texts.
    """
    import torch
    import torch.nn.functional as F

    side = padding_side or getattr(tokenizer, "padding_side", "right")
    seqs, counts = lm_sequences(texts, tokenizer, max_length)
    n = len(seqs)
    nll = np.full(n, np.nan, dtype=np.float64)
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=n)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else context_token_id(tokenizer)
    device = next(model.parameters()).device
    scorable = np.flatnonzero(lengths >= 2)
    for sub in length_batches(lengths[scorable], batch_size, sort=sort_by_length):
        idx = scorable[sub]
        width = int(lengths[idx].max())
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            s = seqs[i]
            sl = slice(width - len(s), width) if side == "left" else slice(0, len(s))
            ids[r, sl] = torch.tensor(s)
            mask[r, sl] = 1
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        ids, mask, pos = ids.to(device), mask.to(device), pos.to(device)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
            # fp32 log-softmax: bf16 logits lose ~3 digits in the NLL.
            tok_nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), ids[:, 1:], reduction="none")
            # A target counts only when it and its predecessor are real tokens.
            valid = (mask[:, 1:] * mask[:, :-1]).bool()
            tok_nll = torch.where(valid, tok_nll, torch.zeros_like(tok_nll))
            mean = tok_nll.sum(1) / valid.sum(1)
        nll[idx] = mean.double().cpu().numpy()
    return {"lm_mean_nll": nll, "perplexity": np.exp(nll), "lm_token_count": counts}


class PerplexityBatch(ModelBatch):
    """Ray Data UDF: causal LM loaded once per actor; returns ``id`` + :data:`COLUMNS`."""

    VERSION = 1
    loader = "load_causal_lm"

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        return lm_scores(texts, self.tokenizer, self.model,
                    max_length=self.max_length, batch_size=self.batch_size)


def _check(values: dict[str, np.ndarray]) -> str | None:
    nan = ~np.isfinite(values["lm_mean_nll"]) | ~np.isfinite(values["perplexity"])
    if (nan & (np.asarray(values["lm_token_count"]) > 0)).any():
        return "NaN perplexity for a non-empty text"
    return None


def family_spec(cfg: FeaturesConfig, device: str, n_threads: int | None = None) -> FamilySpec:
    """The ``perplexity`` family (requires ``cfg.perplexity_model``)."""
    dtype = torch_dtype_name(device)
    settings = {"max_length": cfg.max_length, "dtype": dtype}
    return FamilySpec(
        name="perplexity", udf=PerplexityBatch,
        udf_kwargs={**settings, "model": cfg.perplexity_model, "batch_size": cfg.perplexity_batch_size,
                    "device": device, "n_threads": n_threads},
        key_settings=settings, model_ref=cfg.perplexity_model, columns=COLUMNS, uses_model=True,
        batch_rows=cfg.perplexity_batch_size * 16, check_values=_check,
    )
