"""``dsir``: Data Selection with Importance Resampling (Xie et al., NeurIPS 2023)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dataselect.selectors.base import TARGET_PREFIX, Selection, Selector, check, is_int, is_real
from dataselect.selectors.registry import register
from dataselect.selectors.resample import gumbel_top_k, top_k

__all__ = ["DSIR", "bag_log_ratio", "row_sums"]

COLUMN = "ngram_buckets"


def bucket_probs(rows: np.ndarray, num_buckets: int) -> np.ndarray:
    """Bag-of-n-grams model: each bucket's share of all n-gram occurrences in ``rows``."""
    flat = np.concatenate(list(rows)) if len(rows) else np.zeros(0, np.int64)
    counts = np.bincount(flat, minlength=num_buckets).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def bag_log_ratio(pool: np.ndarray, target: np.ndarray, smoothing: float = 1e-8) -> np.ndarray:
    """``log(p_target + s) - log(p_pool + s)`` per bucket, the authors' ``log_diff``."""
    b = 1 + max(max((int(r.max()) for r in pool if len(r)), default=0),
                max((int(r.max()) for r in target if len(r)), default=0))
    return np.log(bucket_probs(target, b) + smoothing) - np.log(bucket_probs(pool, b) + smoothing)


def row_sums(rows: np.ndarray, per_bucket: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, ``sum(per_bucket[b])`` over its n-gram occurrences, and its n-gram count."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    flat = np.concatenate(list(rows)).astype(np.int64) if len(rows) else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(rows)), lengths)
    return np.bincount(owner, weights=per_bucket[flat], minlength=len(rows)), lengths


@register("dsir")
@dataclass(frozen=True)
class DSIR(Selector):
    """Importance resampling of the pool toward the target on hashed n-gram bags.

    Fits two bag-of-n-grams models on the rows' hashed unigram + bigram
    buckets (``ngram_buckets``, :mod:`dataselect.features.ngrams`): the
    target's and the pool's bucket frequencies. A row's log importance
    weight is the sum over its n-gram occurrences of
    ``log(p_target(b) + 1e-8) - log(p_pool(b) + 1e-8)``, and ``budget`` rows
    are drawn without replacement with probability proportional to the
    weight (Gumbel top-k with the seed's generator), as in the paper and its
    package (``data-selection``, ``HashedNgramDSIR``: same tokens, hash,
    buckets and smoothing; BENCHMARKS.md compares the two).

    Parameters
    ----------
    top_k : bool, default=False
        Keep the ``budget`` highest weights instead of resampling
        (the package's ``top_k=True``); seed-free then.
    temperature : float > 0, default=1.0
        Resample with probability ∝ ``w ** (1 / temperature)``: above 1
        flattens the weights (more diverse picks), below 1 sharpens them.
    min_ngrams : int >= 0, default=0
        Rows with fewer n-gram occurrences are never picked (the package's
        ``min_example_length`` counts words and defaults to 100, which would
        drop every SST-2 row).

    Notes
    -----
    Reads ``ngram_buckets`` of the pool and of the target
    (``target:ngram_buckets``): set ``features.ngrams: true`` and a
    ``target:`` block. ``scores`` are the picks' log importance weights;
    ``info`` holds the weights' effective sample size over the pool
    (``(Σw)² / Σw²``, Kish 1965), small when a few rows carry the mass.

    References
    ----------
    .. [1] S. M. Xie, S. Santurkar, T. Ma, P. Liang, "Data Selection for
       Language Models via Importance Resampling", NeurIPS 2023.
    """

    requires: ClassVar[tuple[str, ...]] = (COLUMN, TARGET_PREFIX + COLUMN)
    top_k: bool = False
    temperature: float = 1.0
    min_ngrams: int = 0

    def __post_init__(self) -> None:
        check("DSIR", "top_k", self.top_k, isinstance(self.top_k, bool), "a bool")
        check("DSIR", "temperature", self.temperature, is_real(self.temperature) and self.temperature > 0,
              "a positive number")
        check("DSIR", "min_ngrams", self.min_ngrams, is_int(self.min_ngrams) and self.min_ngrams >= 0,
              "an int >= 0")

    prefix_consistent: ClassVar[bool] = True

    @property
    def seeded(self) -> bool:  # type: ignore[override]
        return not self.top_k

    def log_weights(self, features: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """``(log importance weight, n-gram count)`` per pool row."""
        pool, target = features[COLUMN], features[TARGET_PREFIX + COLUMN]
        return row_sums(pool, bag_log_ratio(pool, target))

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        logw, lengths = self.log_weights(features)
        eligible = lengths >= self.min_ngrams
        if int(eligible.sum()) < budget:
            from dataselect.core.errors import DataError

            raise DataError(f"DSIR: only {int(eligible.sum())} rows have >= {self.min_ngrams} n-grams; "
                            f"budget is {budget}")
        keyed = np.where(eligible, logw, -np.inf)
        if self.top_k:
            picks = top_k(keyed, budget)
        else:
            picks, _ = gumbel_top_k(keyed, budget, rng, self.temperature)
        w = np.exp(logw[eligible] - logw[eligible].max())
        ess = float(w.sum() ** 2 / (w ** 2).sum())
        return Selection(picks, logw[picks], {"effective_sample_size": ess,
                                              "mean_log_weight_pool": float(logw.mean())})
