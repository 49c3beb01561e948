"""Hashed word n-grams per row: the features of DSIR and of n-gram Moore–Lewis.

DSIR (Xie et al., "Data Selection for Language Models via Importance
Resampling", NeurIPS 2023) models target and raw data as bags of hashed
n-grams. This family computes them exactly as the authors' package
(``data-selection`` 1.0.3, ``HashedNgramDSIR``) does: the text lower-cased,
split into ``\\w+|[^\\w\\s]+`` tokens (NLTK's ``WordPunctTokenizer``),
unigrams and bigrams (``n = 2``), each hashed by sha256 into
``num_buckets = 10,000`` buckets, so log importance weights computed from
these columns equal theirs (BENCHMARKS.md).

A row's value is the bucket of every n-gram occurrence, in text order (an
int32 vector whose repeats are the counts; lengths differ from row to row:
a ragged column, :data:`~dataselect.selectors.base.RAGGED_COLUMNS`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from dataselect.core.config import FeaturesConfig
from dataselect.features._common import FamilySpec, text_list

COLUMNS = ("ngram_buckets",)
TOKEN = re.compile(r"\w+|[^\w\s]+")
"""NLTK's ``WordPunctTokenizer`` pattern, the one the authors' package uses."""


def hash_bucket(gram: str, num_buckets: int) -> int:
    """``int(sha256(gram)) mod num_buckets``: the authors' ``hash_buckets``."""
    return int(hashlib.sha256(gram.encode("utf-8")).hexdigest(), 16) % num_buckets


def hashed_ngrams(texts: Sequence[str], n: int = 2, num_buckets: int = 10_000) -> list[np.ndarray]:
    """Per text, the buckets of its 1..n-grams: unigrams first, then bigrams, ... (int32).

    Each distinct n-gram is hashed once (a dict memo): the vocabulary of a
    pool is far smaller than its n-gram count.
    """
    memo: dict[str, int] = {}

    def bucket(gram: str) -> int:
        b = memo.get(gram)
        if b is None:
            b = memo[gram] = hash_bucket(gram, num_buckets)
        return b

    out = []
    for text in texts:
        words = TOKEN.findall(text.lower())
        ids = [bucket(w) for w in words]
        for k in range(2, n + 1):
            ids += [bucket(" ".join(words[i:i + k])) for i in range(len(words) - k + 1)]
        out.append(np.asarray(ids, dtype=np.int32))
    return out


def ragged(rows: Sequence[np.ndarray]) -> np.ndarray:
    """An object array (n,) holding the row vectors (numpy would stack equal lengths)."""
    arr = np.empty(len(rows), dtype=object)
    for i, r in enumerate(rows):
        arr[i] = r
    return arr


class NgramBatch:
    """Ray Data UDF (no model): returns ``id``, ``ngram_buckets``."""

    VERSION = 1

    def __init__(self, *, n: int, num_buckets: int, **_: object) -> None:
        self.n, self.num_buckets = n, num_buckets

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"id": np.asarray(batch["id"], dtype=np.int64),
                "ngram_buckets": ragged(hashed_ngrams(text_list(batch), self.n, self.num_buckets))}


def check(values: dict[str, np.ndarray]) -> str | None:
    """Buckets must be int vectors in range (a wrong value would misweight silently)."""
    for v in values["ngram_buckets"]:
        a = np.asarray(v)
        if a.ndim != 1 or (a.size and (a.dtype.kind not in "iu" or a.min() < 0)):
            return "ngram_buckets rows must be non-negative int vectors"
    return None


def family_spec(cfg: FeaturesConfig, device: str, n_threads: int | None = None) -> FamilySpec:
    """The ``ngrams`` family (pure Python, ``device`` is irrelevant)."""
    settings = {"n": cfg.ngram_n, "num_buckets": cfg.ngram_buckets, "tokenizer": "wordpunct",
                "hash": "sha256"}
    return FamilySpec(
        name="ngrams", udf=NgramBatch, udf_kwargs={"n": cfg.ngram_n, "num_buckets": cfg.ngram_buckets},
        key_settings=settings, model_ref=None, columns=COLUMNS, uses_model=False, batch_rows=8192,
        check_values=check,
    )
