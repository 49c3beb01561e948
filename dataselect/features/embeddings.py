"""Sentence embeddings from a pretrained encoder (CLS or mean pooling).

Geometry-based selectors (k-center, herding, clustering) consume
``embedding`` (n, d) float32; ``embedding_norm`` is its L2-normalised copy, so
Euclidean distance on it orders pairs exactly as cosine distance does.
Mean pooling over non-padding tokens is the sentence-transformers default and
beats the raw CLS vector of encoders not trained for it (Reimers & Gurevych,
"Sentence-BERT", EMNLP 2019).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dataselect.core.config import FeaturesConfig
from dataselect.features._common import (
    FamilySpec,
    length_batches,
    no_nan,
    setup_torch,
    text_list,
    to_torch_dtype,
    torch_dtype_name,
)

COLUMNS = ("embedding", "embedding_norm")


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` (n, d) scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def embed_texts(
    texts: Sequence[str],
    tokenizer: Any,
    model: Any,
    *,
    pooling: str = "mean",
    max_length: int = 128,
    batch_size: int = 64,
    sort_by_length: bool = True,
) -> np.ndarray:
    """Embed ``texts`` with ``model``; plain function, no Ray.

    Parameters
    ----------
    texts : sequence of str
        n texts.
    tokenizer, model
        A HF tokenizer and bare encoder (``AutoModel``), e.g. from
        :func:`dataselect.core.models.load_encoder`.
    pooling : {"mean", "cls"}, default="mean"
        ``mean``: average of the last hidden states over non-padding tokens
        (special tokens included, as sentence-transformers does); ``cls``:
        the first token's state.
    max_length : int, default=128
        Truncation length in tokens (special tokens included).
    batch_size : int, default=64
        Texts per forward pass.
    sort_by_length : bool, default=True
        Batch texts of similar token length together to minimise padding;
        results are returned in input order either way.

    Returns
    -------
    ndarray of shape (n, d), float32
    """
    import torch

    n = len(texts)
    d = int(model.config.hidden_size)
    out = np.empty((n, d), dtype=np.float32)
    if n == 0:
        return out
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=True)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    lengths = np.fromiter((len(x) for x in enc["input_ids"]), dtype=np.int64, count=n)
    device = next(model.parameters()).device
    for idx in length_batches(lengths, batch_size, sort=sort_by_length):
        feats = tokenizer.pad({k: [enc[k][i] for i in idx] for k in keys}, return_tensors="pt")
        feats = {k: v.to(device) for k, v in feats.items()}
        with torch.inference_mode():
            h = model(**feats).last_hidden_state.float()
        if pooling == "cls":
            pooled = h[:, 0]
        else:
            m = feats["attention_mask"].unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        out[idx] = pooled.cpu().numpy()
    return out


class EmbedBatch:
    """Ray Data UDF: encoder loaded once per actor, batches of ``id``/``text`` in.

    Returns ``id`` (carried through: Ray Data may reorder rows), ``embedding``
    and, when ``normalize``, ``embedding_norm``.
    """

    VERSION = 1

    def __init__(
        self, *, model: str, pooling: str = "mean", normalize: bool = True, max_length: int = 128,
        batch_size: int = 64, device: str = "cpu", dtype: str = "float32", n_threads: int | None = None,
    ) -> None:
        from dataselect.core.models import load_encoder, load_tokenizer

        setup_torch(n_threads)
        self.tokenizer = load_tokenizer(model)
        self.model = load_encoder(model, device, to_torch_dtype(dtype))
        self.pooling, self.normalize = pooling, normalize
        self.max_length, self.batch_size = max_length, batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        emb = embed_texts(text_list(batch), self.tokenizer, self.model, pooling=self.pooling,
                          max_length=self.max_length, batch_size=self.batch_size)
        out = {"id": np.asarray(batch["id"], dtype=np.int64), "embedding": emb}
        if self.normalize:
            out["embedding_norm"] = l2_normalize(emb)
        return out


def family_spec(cfg: FeaturesConfig, device: str, n_threads: int | None = None) -> FamilySpec:
    """The ``embedding`` family for ``cfg`` on ``device`` ("cpu" or "cuda")."""
    dtype = torch_dtype_name(device)
    # The model enters the key through its fingerprint, not its (path-dependent) name.
    settings = {"pooling": cfg.pooling, "normalize": cfg.normalize,
                "max_length": cfg.max_length, "dtype": dtype}
    cols = COLUMNS if cfg.normalize else COLUMNS[:1]
    return FamilySpec(
        name="embedding", udf=EmbedBatch,
        udf_kwargs={**settings, "model": cfg.encoder, "batch_size": cfg.batch_size, "device": device, "n_threads": n_threads},
        key_settings=settings, model_ref=cfg.encoder, columns=cols, uses_model=True,
        batch_rows=cfg.batch_size * 8, check_values=no_nan(cols),
    )
