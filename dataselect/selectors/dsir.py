"""``dsir``: Data Selection with Importance Resampling (Xie et al., NeurIPS 2023)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dataselect.selectors.base import TARGET_PREFIX, Selection, Selector, check, is_int, is_real
from dataselect.selectors.registry import register
from dataselect.selectors.resample import gumbel_top_k, top_k
from dataselect.selectors.target_support import (
    WARNINGS_KEY,
    effective_sample_size,
    length_drive,
    length_drive_prefix,
    ngram_support,
)

__all__ = ["DSIR", "PAPER", "POOL_LOG_WEIGHT", "bag_log_ratio", "legacy_params", "row_sums"]

COLUMN = "ngram_buckets"

POOL_LOG_WEIGHT = "_pool_log_weight"
"""Column :meth:`DSIR.prepare` (and ``density_ratio``'s) adds: log weights fitted on the
whole pool, which a ``per_class`` run then cuts class by class."""

PAPER = {"backoff": 0.0, "normalize": False, "top_k": False}
"""The authors' recipe (Xie et al. 2023; ``data-selection``'s ``HashedNgramDSIR``): the
target model alone, smoothed by 1e-8, the summed weight, importance resampling:
``dsir`` with these params. The values of the parameters added since (``backoff``,
``normalize``) are left out of :meth:`DSIR.params` (and so of manifest keys): a
selection made before they existed keeps its key."""


def legacy_params(params: dict[str, Any], legacy: dict[str, Any]) -> dict[str, Any]:
    """``params`` without the fields that hold their ``legacy`` value (what absent meant then)."""
    return {k: v for k, v in params.items() if not (k in legacy and v == legacy[k])}


def bucket_probs(rows: np.ndarray, num_buckets: int) -> np.ndarray:
    """Bag-of-n-grams model: each bucket's share of all n-gram occurrences in ``rows``."""
    flat = np.concatenate(list(rows)) if len(rows) else np.zeros(0, np.int64)
    counts = np.bincount(flat, minlength=num_buckets).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def bag_log_ratio(pool: np.ndarray, target: np.ndarray, smoothing: float = 1e-8,
                  backoff: float = 0.0) -> np.ndarray:
    """``log(p_target + s) - log(p_pool + s)`` per bucket, the authors' ``log_diff``.

    ``backoff`` = λ > 0 replaces ``p_target`` by ``(1 - λ) p_target + λ p_pool``
    (Jelinek–Mercer interpolation with the pool model): a bucket the target
    never shows then weighs ``log λ`` instead of ``log(1e-8 / p_pool)``.
    """
    b = 1 + max(max((int(r.max()) for r in pool if len(r)), default=0),
                max((int(r.max()) for r in target if len(r)), default=0))
    p_target, p_pool = bucket_probs(target, b), bucket_probs(pool, b)
    if backoff:
        p_target = (1.0 - backoff) * p_target + backoff * p_pool
    return np.log(p_target + smoothing) - np.log(p_pool + smoothing)


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
    ``log(p_target(b) + 1e-8) - log(p_pool(b) + 1e-8)``; the paper draws
    ``budget`` rows without replacement with probability proportional to the
    weight (Gumbel top-k with the seed's generator).

    The authors fit the target model on a large corpus. With a target of a
    few hundred rows most pool n-grams never occur in it, each such
    occurrence adds about ``log(1e-8 / p_pool)`` to the sum, and the shortest
    rows win whatever their n-grams (two-domain pool, 300-row target of the
    long domain: 2 % target-domain rows kept; SST-2 toward 300 of its
    19-word sentences: 3.7-word rows; BENCHMARKS.md "small targets"). The
    defaults are therefore the variant that works on the targets users hold:
    the target model backed off to the pool (``backoff`` = λ = 0.9: an
    n-gram the target lacks weighs ``log λ``, one it shows more often than
    the pool weighs more than 0) and the highest weights kept (``top_k``;
    resampling such flattened weights is close to random). It keeps >= 93 %
    target-domain rows at 100-10,000 target rows whichever domain is longer,
    and 18-20-word rows toward SST-2's sentences. :data:`PAPER`
    (``backoff=0, top_k=False``) is the authors' exact recipe, equal to
    their package's (``data-selection``, ``HashedNgramDSIR``: same tokens,
    hash, buckets and smoothing; BENCHMARKS.md compares the two). ``info``
    says when a selection is driven by length.

    Parameters
    ----------
    backoff : float in [0, 1), default=0.9
        λ: the target model is ``(1 - λ) p_target + λ p_pool`` (0: the paper's).
    normalize : bool, default=False
        Mean log ratio per n-gram instead of the sum (a length-free weight;
        its top is short rows, whose mean has the widest spread).
    top_k : bool, default=True
        Keep the ``budget`` highest weights (the package's ``top_k=True``;
        seed-free) instead of resampling (False: the paper's).
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
    (``target:ngram_buckets``; the feature stage computes them for it).
    ``scores`` are the picks' log importance weights. ``info`` says how well
    the target supports its model (:mod:`dataselect.selectors.target_support`):
    ``target_unseen_share`` (pool n-gram occurrences the target never shows),
    ``effective_sample_size`` of the weights over the pool (Kish 1965), the
    mean n-gram count of pool, target and kept rows, and ``warnings`` when
    the picks moved away from the target's length. With ``per_class`` the
    weights are fitted on the whole pool, then cut class by class.

    References
    ----------
    .. [1] S. M. Xie, S. Santurkar, T. Ma, P. Liang, "Data Selection for
       Language Models via Importance Resampling", NeurIPS 2023.
    .. [2] F. Jelinek, R. L. Mercer, "Interpolated estimation of Markov source
       parameters from sparse data", Pattern Recognition in Practice, 1980.
    """

    requires: ClassVar[tuple[str, ...]] = (COLUMN, TARGET_PREFIX + COLUMN)
    backoff: float = 0.9
    normalize: bool = False
    top_k: bool = True
    temperature: float = 1.0
    min_ngrams: int = 0

    def __post_init__(self) -> None:
        check("DSIR", "backoff", self.backoff, is_real(self.backoff) and 0 <= self.backoff < 1,
              "a number in [0, 1) (0: the authors' recipe)")
        check("DSIR", "normalize", self.normalize, isinstance(self.normalize, bool), "a bool")
        check("DSIR", "top_k", self.top_k, isinstance(self.top_k, bool), "a bool")
        check("DSIR", "temperature", self.temperature, is_real(self.temperature) and self.temperature > 0,
              "a positive number")
        check("DSIR", "min_ngrams", self.min_ngrams, is_int(self.min_ngrams) and self.min_ngrams >= 0,
              "an int >= 0")

    prefix_consistent: ClassVar[bool] = True
    scores_pool: ClassVar[bool] = True

    @property
    def seeded(self) -> bool:  # type: ignore[override]
        return not self.top_k

    def params(self) -> dict[str, Any]:
        return legacy_params(super().params(), {k: PAPER[k] for k in ("backoff", "normalize")})

    def log_weights(self, features: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """``(log importance weight, n-gram count)`` per pool row."""
        pool, target = features[COLUMN], features[TARGET_PREFIX + COLUMN]
        sums, lengths = row_sums(pool, bag_log_ratio(pool, target, backoff=float(self.backoff)))
        if self.normalize:
            sums = sums / np.maximum(lengths, 1)
        return sums, lengths

    def prepare(self, features: dict[str, np.ndarray], n: int, budget: int,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {POOL_LOG_WEIGHT: self.log_weights(features)[0]}

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        if POOL_LOG_WEIGHT in features:  # one class of a per_class run: weights of the whole pool
            logw = np.asarray(features[POOL_LOG_WEIGHT], np.float64)
            lengths = np.fromiter((len(r) for r in features[COLUMN]), dtype=np.int64, count=n)
        else:
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
        info = support_info(features, logw[eligible], lengths, picks)
        return Selection(picks, logw[picks], {**info, "mean_log_weight_pool": float(logw.mean())})

    def _prefix_info(self, selection: Selection, budget: int) -> dict[str, Any]:
        return prefix_support_info(selection.info, budget)


def support_info(features: dict[str, Any], logw: np.ndarray, lengths: np.ndarray,
                 picks: np.ndarray) -> dict[str, Any]:
    """What an n-gram selection's ``info`` says about its target's support (module docstring of
    :mod:`~dataselect.selectors.target_support`), from the pool's and the target's bucket rows."""
    target = features[TARGET_PREFIX + COLUMN]
    t_len = np.fromiter((len(r) for r in target), dtype=np.int64, count=len(target))
    lens, warnings = length_drive(lengths, t_len, picks)
    return {"effective_sample_size": effective_sample_size(logw), **ngram_support(features[COLUMN], target), **lens,
            WARNINGS_KEY: warnings}


def prefix_support_info(info: dict[str, Any], budget: int) -> dict[str, Any]:
    """:func:`support_info`'s part of ``info`` for the first ``budget`` picks (the rest does not
    depend on the budget)."""
    lens, warnings = length_drive_prefix(info, budget)
    return {**info, **lens, WARNINGS_KEY: warnings}
