"""``metric_match``: a subset whose text-metric distribution is the target's.

Importance resampling on binned metrics: the named metrics (words per row,
readability, ...) are cut into quantile bins of the pool and target
together, the joint bin of every row gets the weight
``p_target(bin) / p_pool(bin)`` (add-``alpha`` smoothed counts), and
``budget`` rows are drawn without replacement with probability ∝ weight
(Gumbel top-k). Drawn from the pool this way, a bin's expected share of the
subset is its target share (Rubin's sampling-importance-resampling, 1988;
the same estimator DSIR applies to n-gram bags, Xie et al., NeurIPS 2023,
here on features one can read: SST-2's pool is phrases, mean 9.4 words,
its eval whole sentences, mean 19.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataselect.selectors.base import TARGET_PREFIX, Selection, Selector, check, is_int, is_real
from dataselect.selectors.registry import register
from dataselect.selectors.resample import gumbel_top_k

__all__ = ["MetricMatch", "joint_bins"]


def joint_bins(pool: list[np.ndarray], target: list[np.ndarray], bins: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Joint quantile-bin ids of pool and target rows, and the number of joint bins.

    Each metric's edges are its quantiles over pool and target rows
    together (repeated edges merged, so a metric with few values gets fewer
    bins); the joint id is the mixed-radix number of the per-metric bins.
    """
    ids_p = np.zeros(len(pool[0]), dtype=np.int64)
    ids_t = np.zeros(len(target[0]), dtype=np.int64)
    size = 1
    for p, t in zip(pool, target, strict=True):
        both = np.concatenate([p, t])
        edges = np.unique(np.quantile(both, np.linspace(0, 1, bins + 1)[1:-1]))
        k = len(edges) + 1
        ids_p = ids_p * k + np.searchsorted(edges, p, side="right")
        ids_t = ids_t * k + np.searchsorted(edges, t, side="right")
        size *= k
    return ids_p, ids_t, size


@register("metric_match")
@dataclass(frozen=True)
class MetricMatch(Selector):
    """Resample the pool so the subset's binned metrics follow the target's.

    Parameters
    ----------
    metrics : list of str, default=["token_count"]
        Pool and target columns to match jointly (text metrics:
        ``token_count`` is words per row, ``flesch_reading_ease``, ...).
    bins : int in [2, 100], default=10
        Quantile bins per metric (joint bins: ``bins ** len(metrics)`` at most).
    alpha : float > 0, default=0.5
        Added to every bin's count in both histograms, so a bin the target
        lacks is rare in the subset but not impossible.

    Notes
    -----
    ``info["tv_pool"]`` is the total variation distance between the pool's
    and the target's joint bin histograms, ``info["tv_subset"]`` between the
    subset's and the target's (0: the same distribution); ``scores`` are the
    picks' log weights.
    """

    metrics: tuple[str, ...] = ("token_count",)
    bins: int = 10
    alpha: float = 0.5

    # Not prefix-consistent: info["tv_subset"] depends on the budget (the picks are a prefix).

    def __post_init__(self) -> None:
        ms = self.metrics
        ok = (isinstance(ms, list | tuple) and len(ms) > 0 and len(set(ms)) == len(ms)
              and all(isinstance(m, str) and m and not m.startswith(TARGET_PREFIX) for m in ms))
        check("MetricMatch", "metrics", ms, ok, "a non-empty list of distinct pool column names")
        object.__setattr__(self, "metrics", tuple(ms))
        check("MetricMatch", "bins", self.bins, is_int(self.bins) and 2 <= self.bins <= 100, "an int in [2, 100]")
        check("MetricMatch", "alpha", self.alpha, is_real(self.alpha) and self.alpha > 0, "a positive number")

    def required(self) -> tuple[str, ...]:
        return (*self.metrics, *(TARGET_PREFIX + m for m in self.metrics))

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        pool = [np.asarray(features[m], np.float64) for m in self.metrics]
        target = [np.asarray(features[TARGET_PREFIX + m], np.float64) for m in self.metrics]
        ids_p, ids_t, size = joint_bins(pool, target, self.bins)
        cp = np.bincount(ids_p, minlength=size).astype(np.float64)
        ct = np.bincount(ids_t, minlength=size).astype(np.float64)
        log_w = (np.log((ct + self.alpha) / (ct.sum() + self.alpha * size))
                 - np.log((cp + self.alpha) / (cp.sum() + self.alpha * size)))
        picks, _ = gumbel_top_k(log_w[ids_p], budget, rng)
        sub = np.bincount(ids_p[picks], minlength=size) / budget
        tv_t = ct / ct.sum()
        info = {"joint_bins": int(size), "tv_pool": float(0.5 * np.abs(cp / cp.sum() - tv_t).sum()),
                "tv_subset": float(0.5 * np.abs(sub - tv_t).sum())}
        return Selection(picks, log_w[ids_p][picks], info)
