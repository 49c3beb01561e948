"""``density_ratio``: keep the pool rows a target-vs-pool classifier finds most target-like.

Two estimators of how much more likely a row is under the target than
under the pool:

* ``classifier``: a logistic regression told target rows (1) from pool rows
  (0) on the cached embeddings; its odds, times n_pool / n_target, estimate
  ``p_target(x) / p_pool(x)`` (Bickel, Brückner & Scheffer, JMLR 2009;
  Sugiyama, Suzuki & Kanamori, "Density Ratio Estimation in Machine
  Learning", 2012). Cross-fitted: every row (pool and target) is scored by
  the fold model that did not see it, so a pool row that is a near copy of
  a training row cannot be scored by a model that memorised it.
* ``moore_lewis``: cross-entropy difference (Moore & Lewis, ACL 2010) under
  two smoothed bag-of-n-grams language models on the hashed n-gram buckets:
  one fitted on the target, one on a seeded pool sample of the same number
  of n-grams (as the paper fits its general model on a same-size random
  sample). A row's score is ``-(H_target(x) - H_pool(x))``, both per n-gram,
  so length does not decide the sign (unlike DSIR's summed weight); but the
  top of a per-n-gram mean is the shortest rows (a one-n-gram row has the
  widest spread: SST-2 toward 19-word sentences kept 1.8-word rows).
  The default therefore shrinks each row's mean toward the pool's mean per
  n-gram, as a posterior mean under a prior worth ``shrinkage`` = k = 16
  n-grams (``(Σ_row d + k μ) / (len + k)``): a long row keeps its own mean,
  a short one needs consistent evidence. It keeps >= 96 % target-domain rows
  on two-domain pools at 100-10,000 target rows whichever domain is longer
  (BENCHMARKS.md "small targets"); ``shrinkage=0`` is Moore & Lewis's score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dataselect.selectors.base import TARGET_PREFIX, Selection, Selector, check, is_int, is_real
from dataselect.selectors.crossfit import crossfit_proba
from dataselect.selectors.dsir import (
    POOL_LOG_WEIGHT,
    bucket_probs,
    legacy_params,
    prefix_support_info,
    row_sums,
    support_info,
)
from dataselect.selectors.registry import register
from dataselect.selectors.resample import gumbel_top_k, top_k
from dataselect.selectors.target_support import WARNINGS_KEY, effective_sample_size

__all__ = ["DensityRatio", "WEAK_AUC"]

WEAK_AUC = 0.6
"""Below this cross-fitted domain AUC the classifier barely tells target from pool: a warning."""

METHODS = ("classifier", "moore_lewis")
MODES = ("topk", "sample")
PAPER = {"shrinkage": 0.0}
"""Moore & Lewis's own score (no shrinkage): left out of :meth:`DensityRatio.params`, so a
selection made before ``shrinkage`` existed keeps its manifest key."""


@register("density_ratio")
@dataclass(frozen=True)
class DensityRatio(Selector):
    """Rows ranked by an estimate of ``p_target(x) / p_pool(x)``.

    Parameters
    ----------
    method : {"classifier", "moore_lewis"}, default="classifier"
        See the module docstring.
    column : str, default="embedding_norm"
        ``classifier``: the embedding column of pool and target (standardised
        per fold).
    C : float > 0, default=1.0
        ``classifier``: inverse L2 strength of the logistic regression.
    n_folds : int in [2, 50], default=5
        ``classifier``: cross-fitting folds (stratified by domain, seeded).
    alpha : float > 0, default=1.0
        ``moore_lewis``: additive smoothing of the bucket counts.
    shrinkage : float >= 0, default=16.0
        ``moore_lewis``: pseudo n-grams at the pool's mean log ratio added to
        every row's mean (0: Moore & Lewis's score).
    mode : {"topk", "sample"}, default="topk"
        ``topk`` keeps the highest ratios (Moore–Lewis's cutoff); ``sample``
        resamples without replacement with probability ∝
        ``ratio ** (1 / temperature)`` (Gumbel top-k).
    temperature : float > 0, default=1.0
        ``sample`` only.

    Notes
    -----
    ``scores`` are the picks' log ratios; ``info["target_auc"]`` is the
    cross-fitted classifier's ROC AUC, target vs pool (0.5: the two look
    alike in this representation, and the ratio is near 1 everywhere), with
    a warning below :data:`WEAK_AUC`. ``moore_lewis``'s ``info`` says how well
    the target supports its model, as DSIR's does. Both hold the
    ``effective_sample_size`` of the ratios. With ``per_class`` the ratios
    are estimated on the whole pool, then cut class by class.
    """

    method: str = "classifier"
    column: str = "embedding_norm"
    C: float = 1.0  # noqa: N815 - scikit-learn's name
    n_folds: int = 5
    alpha: float = 1.0
    shrinkage: float = 16.0
    mode: str = "topk"
    temperature: float = 1.0

    def __post_init__(self) -> None:
        check("DensityRatio", "method", self.method, self.method in METHODS, f"one of {list(METHODS)}")
        check("DensityRatio", "column", self.column, isinstance(self.column, str) and self.column != ""
              and not self.column.startswith(TARGET_PREFIX), "a pool column name")
        check("DensityRatio", "C", self.C, is_real(self.C) and self.C > 0, "a positive number")
        check("DensityRatio", "n_folds", self.n_folds, is_int(self.n_folds) and 2 <= self.n_folds <= 50,
              "an int in [2, 50]")
        check("DensityRatio", "alpha", self.alpha, is_real(self.alpha) and self.alpha > 0, "a positive number")
        check("DensityRatio", "shrinkage", self.shrinkage, is_real(self.shrinkage) and self.shrinkage >= 0,
              "a number >= 0 (0: Moore & Lewis's score)")
        check("DensityRatio", "mode", self.mode, self.mode in MODES, f"one of {list(MODES)}")
        check("DensityRatio", "temperature", self.temperature,
              is_real(self.temperature) and self.temperature > 0, "a positive number")

    def required(self) -> tuple[str, ...]:
        col = "ngram_buckets" if self.method == "moore_lewis" else self.column
        return (col, TARGET_PREFIX + col)

    # Seeded: the folds (classifier), the pool sample (Moore–Lewis) and resampling use the seed.
    prefix_consistent: ClassVar[bool] = True
    scores_pool: ClassVar[bool] = True

    def params(self) -> dict[str, Any]:
        out = super().params()
        if self.method != "moore_lewis":  # the classifier has no use for it: not in its key
            out.pop("shrinkage", None)
        return legacy_params(out, PAPER)

    def log_ratios(self, features: dict[str, Any], seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Per pool row, the estimated log density ratio; and diagnostics."""
        if self.method == "moore_lewis":
            return _moore_lewis(features["ngram_buckets"], features[TARGET_PREFIX + "ngram_buckets"],
                                self.alpha, seed, float(self.shrinkage))
        pool, target = features[self.column], features[TARGET_PREFIX + self.column]
        n, m = len(pool), len(target)
        if m < self.n_folds:
            from dataselect.core.errors import DataError

            raise DataError(f"DensityRatio: the target has {m} rows, fewer than n_folds={self.n_folds}")
        x = np.concatenate([np.asarray(pool, np.float32), np.asarray(target, np.float32)])
        y = np.concatenate([np.zeros(n, np.int64), np.ones(m, np.int64)])
        proba, _ = crossfit_proba(x, y, n_folds=self.n_folds, seed=seed, C=self.C, n_classes=2)
        p = np.clip(proba[:, 1], 1e-12, 1 - 1e-12)
        logit = np.log(p) - np.log1p(-p)
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(y, p))
        return logit[:n] + np.log(n / m), {"target_auc": auc}

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        if POOL_LOG_WEIGHT in features:  # one class of a per_class run: ratios of the whole pool
            logw, info = np.asarray(features[POOL_LOG_WEIGHT], np.float64), {"scored_on": "pool"}
        else:
            # One integer from the generator seeds the folds / pool sample: same seed, same ratios.
            seed = int(rng.integers(0, 2**31 - 1))
            logw, info = self.log_ratios(features, seed)
        if self.mode == "topk":
            picks = top_k(logw, budget)
        else:
            picks, _ = gumbel_top_k(logw, budget, rng, self.temperature)
        finite = logw[np.isfinite(logw)]
        info = {**info, "mean_log_ratio_pool": float(finite.mean()) if finite.size else None}
        if self.method == "moore_lewis":
            lengths = np.fromiter((len(r) for r in features["ngram_buckets"]), dtype=np.int64, count=n)
            info.update(support_info(features, finite, lengths, picks))
        else:
            info["effective_sample_size"] = effective_sample_size(logw)
            auc = info.get("target_auc")
            info[WARNINGS_KEY] = [] if auc is None or auc >= WEAK_AUC else [
                f"weak target model: the domain classifier tells target from pool rows with AUC {auc:.2f} "
                f"(0.5: no better than chance), so the ratios are near 1 and the picks near random"]
        return Selection(picks, logw[picks], info)

    def prepare(self, features: dict[str, np.ndarray], n: int, budget: int,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {POOL_LOG_WEIGHT: self.log_ratios(features, int(rng.integers(0, 2**31 - 1)))[0]}

    def _prefix_info(self, selection: Selection, budget: int) -> dict[str, Any]:
        if self.method == "moore_lewis":
            return prefix_support_info(selection.info, budget)
        return dict(selection.info)


def _moore_lewis(pool: np.ndarray, target: np.ndarray, alpha: float, seed: int, shrinkage: float = 0.0
                 ) -> tuple[np.ndarray, dict[str, Any]]:
    """``-(H_target - H_pool)`` per row, per n-gram, under add-``alpha`` bag-of-n-grams LMs,
    each row's mean shrunk toward the pool's by ``shrinkage`` pseudo n-grams."""
    b = 1 + max(max((int(r.max()) for r in pool if len(r)), default=0),
                max((int(r.max()) for r in target if len(r)), default=0))
    n_target = sum(len(r) for r in target)
    # The general model sees a seeded pool sample holding as many n-grams as the target.
    order = np.random.default_rng(seed).permutation(len(pool))
    sizes = np.fromiter((len(pool[i]) for i in order), dtype=np.int64, count=len(pool))
    take = order[: max(1, int(np.searchsorted(np.cumsum(sizes), n_target)) + 1)]

    def log_lm(rows: np.ndarray) -> np.ndarray:
        counts = bucket_probs(rows, b) * sum(len(r) for r in rows)
        return np.log((counts + alpha) / (counts.sum() + alpha * b))

    diff = log_lm(target) - log_lm(pool[take])  # log p_T(b) - log p_P(b) per bucket
    sums, lengths = row_sums(pool, diff)
    if shrinkage:
        prior = float(sums.sum() / max(lengths.sum(), 1))  # the pool's mean per n-gram occurrence
        sums, lengths_k = sums + shrinkage * prior, lengths + shrinkage
    else:
        lengths_k = lengths
    score = np.where(lengths > 0, sums / np.maximum(lengths_k, 1), -np.inf)
    return score, {"pool_sample_rows": len(take), "target_ngrams": int(n_target)}
