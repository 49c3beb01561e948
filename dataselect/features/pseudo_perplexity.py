"""Masked-LM pseudo-perplexity (Salazar et al., ACL 2020).

Each text token is masked in turn and scored by the MLM given all the
others; the pseudo-log-likelihood is the sum of those log-probabilities::

    PLL(W) = sum_t log P(w_t | W \\ t),    pseudo_perplexity = exp(-PLL(W) / |W|)

Special tokens (CLS/SEP) are context, never scored. A text of n tokens costs
n forward passes; masked copies of many texts are batched together, sorted
by length, so that cost is paid at full batch width.

References
----------
.. [1] J. Salazar, D. Liang, T. Q. Nguyen, K. Kirchhoff, "Masked Language
   Model Scoring", ACL 2020.
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

COLUMNS = ("pseudo_perplexity", "mlm_mean_nll", "mlm_token_count")


def pseudo_log_likelihoods(
    texts: Sequence[str],
    tokenizer: Any,
    model: Any,
    *,
    max_length: int = 128,
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    """Per-text MLM pseudo-perplexity; plain function, no Ray.

    Parameters
    ----------
    texts : sequence of str
        n texts.
    tokenizer, model
        A HF tokenizer with a mask token and an ``AutoModelForMaskedLM``.
    max_length : int, default=128
        Truncation length in tokens, special tokens included.
    batch_size : int, default=64
        Masked copies per forward pass.

    Returns
    -------
    dict
        ``pseudo_perplexity`` (n,), ``mlm_mean_nll`` (n,) float64 (= -PLL/|W|),
        ``mlm_token_count`` (n,) int64 (|W|, scored tokens). Texts with no
        scorable token get NaN and count 0.
    """
    import torch

    if tokenizer.mask_token_id is None:
        from dataselect.core.errors import ModelError

        raise ModelError("pseudo_perplexity: tokenizer has no mask token; use an encoder with an MLM head")
    enc = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max_length,
                    return_special_tokens_mask=True)
    n = len(texts)
    rows, cols = [], []
    for i, special in enumerate(enc["special_tokens_mask"]):
        for t, s in enumerate(special):
            if not s:
                rows.append(i)
                cols.append(t)
    rows_a, cols_a = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    counts = np.bincount(rows_a, minlength=n).astype(np.int64)
    pll = np.zeros(n, dtype=np.float64)
    seq_len = np.fromiter((len(x) for x in enc["input_ids"]), dtype=np.int64, count=n)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    head = masked_position_head(model)
    for b in length_batches(seq_len[rows_a] if len(rows_a) else rows_a, batch_size):
        r, c = rows_a[b], cols_a[b]
        width = int(seq_len[r].max())
        ids = torch.full((len(b), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(b), width), dtype=torch.long)
        for k, i in enumerate(r):
            s = enc["input_ids"][i]
            ids[k, :len(s)] = torch.tensor(s)
            mask[k, :len(s)] = 1
        ar = torch.arange(len(b))
        ct = torch.from_numpy(c)
        target = ids[ar, ct].clone()
        ids[ar, ct] = tokenizer.mask_token_id
        with torch.inference_mode():
            if head is None:
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                logits = logits[ar.to(device), ct.to(device)]
            else:
                hidden = model.base_model(input_ids=ids.to(device), attention_mask=mask.to(device))[0]
                logits = head(hidden[ar.to(device), ct.to(device)])
            lp = torch.log_softmax(logits.float(), dim=-1)
            tok_lp = lp[torch.arange(len(b), device=device), target.to(device)]
        np.add.at(pll, r, tok_lp.double().cpu().numpy())
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_nll = np.where(counts > 0, -pll / np.maximum(counts, 1), np.nan)
    return {"pseudo_perplexity": np.exp(mean_nll), "mlm_mean_nll": mean_nll, "mlm_token_count": counts}


def masked_position_head(model: Any) -> Any | None:
    """The MLM head as a function of hidden states, or None when it is not known.

    A masked copy needs the vocabulary distribution at one position only;
    running the head on that position alone skips ``width - 1`` of the
    ``hidden x vocab`` projections per copy (most of the cost of a small MLM,
    ~20 % of ModernBERT-base's). Known layouts: ModernBERT (``head`` +
    ``decoder``), BERT (``cls``), RoBERTa (``lm_head``).
    """
    if hasattr(model, "head") and hasattr(model, "decoder"):
        return lambda h: model.decoder(model.head(h))
    for name in ("cls", "lm_head"):
        if hasattr(model, name):
            return getattr(model, name)
    return None


class PseudoPerplexityBatch(ModelBatch):
    """Ray Data UDF: MLM loaded once per actor; returns ``id`` + :data:`COLUMNS`."""

    VERSION = 1
    loader = "load_masked_lm"

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        return pseudo_log_likelihoods(texts, self.tokenizer, self.model,
                    max_length=self.max_length, batch_size=self.batch_size)


def _check(values: dict[str, np.ndarray]) -> str | None:
    nan = ~np.isfinite(values["pseudo_perplexity"])
    if (nan & (np.asarray(values["mlm_token_count"]) > 0)).any():
        return "NaN pseudo-perplexity for a non-empty text"
    return None


def family_spec(cfg: FeaturesConfig, device: str, n_threads: int | None = None) -> FamilySpec:
    """The ``pseudo_perplexity`` family (requires ``cfg.mlm_model``)."""
    dtype = torch_dtype_name(device)
    settings = {"max_length": cfg.max_length, "dtype": dtype}
    return FamilySpec(
        name="pseudo_perplexity", udf=PseudoPerplexityBatch,
        udf_kwargs={**settings, "model": cfg.mlm_model, "batch_size": cfg.mlm_batch_size,
                    "device": device, "n_threads": n_threads},
        key_settings=settings, model_ref=cfg.mlm_model, columns=COLUMNS, uses_model=True,
        # A row expands into ~10-50 masked copies: keep Ray batches small.
        batch_rows=max(cfg.batch_size, 64), check_values=_check,
    )
