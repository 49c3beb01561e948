"""Shared fixtures: real SST-2 features for the selector tests.

``sst2_features`` embeds a seeded sample of SST-2 train sentences with
all-MiniLM-L6-v2 through the feature pipeline's plain path (mean pooling)
once per machine and caches the arrays under pytest's cache dir.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dataselect.core.config import DatasetConfig
from dataselect.core.data import load_dataset
from dataselect.features.text_metrics import text_metrics

N_SAMPLE = 3000
SAMPLE_SEED = 20261125
CACHE_VERSION = "v2"


def embed_minilm(texts: list[str]) -> np.ndarray:
    """Mean-pooled all-MiniLM-L6-v2 embeddings through the feature pipeline's plain path."""
    from dataselect.core.models import load_encoder, load_tokenizer
    from dataselect.features.embeddings import embed_texts

    return embed_texts(texts, load_tokenizer("minilm"), load_encoder("minilm", device="cpu"),
                       pooling="mean", max_length=64, batch_size=64)


@pytest.fixture(scope="session")
def sst2_features(request: pytest.FixtureRequest, sst2_dir: Path) -> dict[str, np.ndarray]:
    """~3000 real SST-2 train rows: ``id``, ``label``, ``embedding`` (n, 384), metrics.

    ``perplexity`` is a seeded log-normal stand-in (no causal LM in the
    selector tests); everything else is real.
    """
    cache = Path(request.config.cache.mkdir(f"dataselect-sst2-minilm-{CACHE_VERSION}"))
    file = cache / f"sample{N_SAMPLE}_seed{SAMPLE_SEED}.npz"
    df = load_dataset(DatasetConfig(source=str(sst2_dir))).train
    ids = np.sort(np.random.default_rng(SAMPLE_SEED).choice(len(df), N_SAMPLE, replace=False))
    texts = df["text"].iloc[ids].tolist()
    if file.exists():
        emb = np.load(file)["embedding"]
    else:
        emb = embed_minilm(texts)
        tmp = file.with_suffix(".tmp.npz")
        np.savez(tmp, embedding=emb)
        os.replace(tmp, file)
    rng = np.random.default_rng(SAMPLE_SEED + 1)
    return {
        "id": ids.astype(np.int64),
        "label": df["label"].to_numpy()[ids].astype(np.int64),
        "embedding": emb,
        "perplexity": rng.lognormal(mean=4.0, sigma=0.6, size=N_SAMPLE),
        **{k: v for k, v in text_metrics(texts).items() if k != "id"},
    }


def toy_features(n: int = 50, d: int = 4, seed: int = 0, max_tokens: int = 30) -> dict[str, np.ndarray]:
    """A seeded table with every column a selector reads: learnable labels,
    near-copies as EDA variants (the quality filters keep most rows); a small
    ``max_tokens`` gives many token-count ties, exercising the tie-breaks."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    # The target (m rows): shifted embeddings, longer texts, n-grams from a smaller vocabulary.
    m = max(n // 2, 10)
    xt = (rng.normal(size=(m, d)) + 0.8).astype(np.float32)
    grams = [rng.integers(0, 40, rng.integers(0, max_tokens)) for _ in range(n)]
    tgrams = [rng.integers(0, 20, rng.integers(1, max_tokens)) for _ in range(m)]
    target = {"embedding": xt, "embedding_norm": xt / np.linalg.norm(xt, axis=1, keepdims=True),
              "label": np.where(np.arange(m) < m // 4, (xt[:, 0] > 0.8).astype(np.int64), -1),
              "ngram_buckets": _ragged(tgrams), "token_count": rng.integers(max_tokens // 2, max_tokens + 1, m),
              "flesch_reading_ease": rng.normal(50, 10, m)}
    return {"embedding": x, "label": (x[:, 0] > 0).astype(np.int64),
            "embedding_norm": x / np.linalg.norm(x, axis=1, keepdims=True), "ngram_buckets": _ragged(grams),
            **{f"target:{k}": v for k, v in target.items()},
            "perplexity": rng.lognormal(size=n), "pseudo_perplexity": rng.lognormal(size=n),
            "subword_ratio": 1 + rng.random(n),
            "judge_ambiguous": rng.normal(-3, 1, n), "judge_sarcastic": rng.normal(-3, 1, n),
            "eda_embedding": np.tile(x, 4) + rng.normal(scale=0.01, size=(n, 4 * d)).astype(np.float32),
            "mattr": rng.uniform(size=n), "mtld": rng.lognormal(size=n),
            "token_count": rng.integers(1, max_tokens, n), "flesch_reading_ease": rng.normal(60, 20, n)}


def _ragged(rows: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(rows), dtype=object)
    out[:] = [np.asarray(r, np.int64) for r in rows]
    return out


@pytest.fixture
def toy():
    """:func:`toy_features`, as a fixture (test modules here are not a package)."""
    return toy_features
