"""Synthetic two-domain pools whose target domain is known, for the target-aware selectors.

Half the pool is domain A (the target's), half domain B. Each domain draws
its words from a vocabulary of its own (Zipf frequencies) and, with
probability ``shared``, from a common one (function words); one domain's
rows are short (``short_words`` on average), the other's long. Every row
carries what the target-aware selectors read: hashed n-gram buckets (the
real featurizer, :func:`dataselect.features.ngrams.hashed_ngrams`), words
per row (``token_count``), a unit embedding (the domain's centre plus
noise) and a label (the sign of one embedding coordinate, the same rule in
both domains, shares 50/50). The target is a separate sample of domain A.
Used by tests/selectors/test_small_target.py and scripts/bench_small_target.py.
"""

from __future__ import annotations

import numpy as np

from dataselect.features.ngrams import hashed_ngrams, ragged

VOCAB = 3000
SHARED_VOCAB = 150


def _texts(rng: np.random.Generator, n: int, domain: str, mean_words: float, shared: float) -> list[str]:
    ranks = np.arange(1, VOCAB + 1)
    p = 1.0 / ranks
    p /= p.sum()
    ps = 1.0 / np.arange(1, SHARED_VOCAB + 1)
    ps /= ps.sum()
    out = []
    for length in 1 + rng.poisson(mean_words - 1, n):
        own = rng.random(length) >= shared
        words = np.where(own, rng.choice(VOCAB, length, p=p), rng.choice(SHARED_VOCAB, length, p=ps))
        out.append(" ".join(f"{domain}{w}" if o else f"s{w}" for w, o in zip(words, own, strict=True)))
    return out


def two_domain(n_pool: int = 4000, n_target: int = 300, *, target_long: bool = True, seed: int = 0,
               short_words: float = 5.0, long_words: float = 25.0, shared: float = 0.4,
               dim: int = 16, separation: float = 1.5) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``(features, in_target_domain)``: pool + ``target:`` columns, and a bool per pool row.

    ``target_long``: the target's domain (A) has the long rows; False swaps the lengths.
    """
    rng = np.random.default_rng(seed)
    n_a = n_pool // 2
    len_a, len_b = (long_words, short_words) if target_long else (short_words, long_words)
    pool_texts = _texts(rng, n_a, "a", len_a, shared) + _texts(rng, n_pool - n_a, "b", len_b, shared)
    target_texts = _texts(rng, n_target, "a", len_a, shared)
    dom = np.r_[np.ones(n_a, bool), np.zeros(n_pool - n_a, bool)]
    centre = rng.normal(size=dim)
    centre *= separation / np.linalg.norm(centre) / 2

    def embed(is_a: np.ndarray) -> np.ndarray:
        x = rng.normal(size=(len(is_a), dim)) + np.where(is_a[:, None], centre, -centre)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    x, xt = embed(dom), embed(np.ones(n_target, bool))
    feats = {
        "ngram_buckets": ragged(hashed_ngrams(pool_texts)),
        "token_count": np.array([len(t.split()) for t in pool_texts], np.float64),
        "embedding_norm": x,
        "label": (x[:, 0] > np.median(x[:, 0])).astype(np.int64),
        "target:ngram_buckets": ragged(hashed_ngrams(target_texts)),
        "target:token_count": np.array([len(t.split()) for t in target_texts], np.float64),
        "target:embedding_norm": xt,
        "target:label": np.full(n_target, -1, np.int64),
    }
    return feats, dom
