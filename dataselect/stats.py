"""Paired comparisons of two training arms that see both seed and eval-set noise.

A selector's accuracy on SST-2's 872 validation rows moves by ~1.3 points
(one standard error near 0.8) for reasons that have nothing to do with the
selector: which rows happen to be in the eval set. A paired t-test over a
handful of seeds sees only the seed-to-seed spread and calls that noise
"significant" when it is shared by chance. Here both sources are resampled
together (Dror et al., "The Hitchhiker's Guide to Testing Statistical
Significance in NLP", ACL 2018):

* **Paired bootstrap** (Efron & Tibshirani, *An Introduction to the
  Bootstrap*, 1993, ch. 16): each of ``B`` resamples draws the seeds with
  replacement *and* eval rows with replacement (multinomial row weights);
  both arms are scored on the *same* resampled rows and seeds, and the
  statistic is the mean over resampled seeds of ``metric(A) - metric(B)``.
  The 95 % interval is the percentile interval; the two-sided p-value
  shifts the bootstrap distribution to the null (``p = (1 + #{|δ* - δ̂| >=
  |δ̂|}) / (B + 1)``).
* **Holm–Bonferroni** (Holm, Scand. J. Statist. 6, 1979) adjusts a family of
  p-values (all selectors vs random at one fraction and metric) so that the
  chance of any false "beats random" stays below α.
* **Power**: the variance of the mean paired difference splits into a seed
  part, ``σ²_seed / n`` (shrinks with more seeds), and an eval-row part,
  ``v_rows`` (fixed by the eval set). The smallest detectable effect at
  level α with power 1-β is ``(z_{1-α/2} + z_{1-β}) · sqrt(σ²_seed / n +
  v_rows)``.

Metrics are recomputed from per-row predictions under the row weights, so
macro F1 / precision / recall are resampled exactly, not approximated.
Everything is vectorised: one (B, m) weight matrix times indicator columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dataselect.metrics import METRICS

N_BOOT = 2000
"""Bootstrap resamples (the issue asks >= 2,000)."""


def holm(p: np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values; NaN entries stay NaN and are not counted.

    ``p_adj[(i)] = max_{j <= i} min(1, (m - j + 1) p_(j))`` over the sorted
    finite p-values, so ``p_adj < α`` exactly when Holm's step-down rejects.
    """
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def row_weights(n_rows: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_rows) multinomial counts: row i appears ``w[b, i]`` times in resample b."""
    return rng.multinomial(n_rows, np.full(n_rows, 1.0 / n_rows), size=n_boot).astype(np.float32)


def _indicators(y: np.ndarray, pred: np.ndarray, num_labels: int) -> np.ndarray:
    """(m, 1 + 3K) columns: correct, then per class TP, predicted-k, actual-k."""
    cls = np.arange(num_labels)
    p_k = pred[:, None] == cls
    y_k = y[:, None] == cls
    return np.concatenate([(pred == y)[:, None], p_k & y_k, p_k, y_k], axis=1).astype(np.float32)


def _metric_from_counts(counts: np.ndarray, total: np.ndarray, num_labels: int, metric: str) -> np.ndarray:
    """Metric from weighted indicator sums (..., 1 + 3K); matches :func:`classification_metrics`."""
    k = num_labels
    if metric == "accuracy":
        return counts[..., 0] / total
    tp, pp, ap = counts[..., 1:1 + k], counts[..., 1 + k:1 + 2 * k], counts[..., 1 + 2 * k:1 + 3 * k]
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "precision":
            per = np.where(pp > 0, tp / pp, 0.0)
        elif metric == "recall":
            per = np.where(ap > 0, tp / ap, 0.0)
        elif metric == "macro_f1":
            per = np.where(pp + ap > 0, 2 * tp / (pp + ap), 0.0)
        else:
            raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
    return per.mean(axis=-1)


@dataclass(frozen=True)
class ArmCounts:
    """Weighted indicator sums of one arm's predictions: what every metric is computed from.

    Built once per arm (:func:`arm_counts`) and reused for all metrics and all
    comparisons that arm takes part in.
    """

    observed: np.ndarray
    """(S, c) sums over the eval set as it is (weights all 1)."""
    boot: np.ndarray
    """(S, B, c) sums under each row resample."""
    n_rows: int
    boot_totals: np.ndarray
    """(B,) total weight of each resample (= n_rows for multinomial weights)."""

    def take(self, seeds: np.ndarray) -> ArmCounts:
        """The same arm restricted to seed positions ``seeds`` (to pair with another arm)."""
        return ArmCounts(self.observed[seeds], self.boot[seeds], self.n_rows, self.boot_totals)


def arm_counts(y: np.ndarray, preds: np.ndarray, weights: np.ndarray, num_labels: int) -> ArmCounts:
    """Indicator sums of each seed's predictions, observed and under each row resample.

    Parameters
    ----------
    y : (m,) int
        Gold labels of the eval rows.
    preds : (S, m) int
        One row of predictions per seed.
    weights : (B, m)
        Row weights from :func:`row_weights`, shared by every arm of a report.
    """
    y = np.asarray(y, dtype=np.int64)
    preds = np.atleast_2d(np.asarray(preds, dtype=np.int64))
    if preds.shape[1] != len(y) or weights.shape[1] != len(y):
        raise ValueError(f"preds {preds.shape} and weights {weights.shape} must have {len(y)} columns")
    cols = np.stack([_indicators(y, p, num_labels) for p in preds])  # (S, m, c)
    boot = np.einsum("bm,smc->sbc", weights, cols, optimize=True)
    return ArmCounts(cols.sum(axis=1), boot, len(y), weights.sum(axis=1))


def arm_metric(arm: ArmCounts, num_labels: int, metric: str) -> np.ndarray:
    """(S,) ``metric`` per seed on the observed eval set; equals :func:`classification_metrics`."""
    return _metric_from_counts(arm.observed, np.float64(arm.n_rows), num_labels, metric)


@dataclass(frozen=True)
class PairedResult:
    """One arm against the baseline on one metric, over seed-matched runs."""

    n_seeds: int
    delta: float
    """Observed mean over seeds of ``metric(arm) - metric(baseline)`` on the whole eval set."""
    ci_low: float
    ci_high: float
    p_boot: float
    se: float
    """Bootstrap standard error of ``delta`` (seeds and rows resampled)."""
    sd_seed: float
    """Sample std (ddof=1) of the per-seed differences: the seed-to-seed part."""
    var_rows: float
    """Variance of ``delta`` when only eval rows are resampled: the eval-set part."""


def paired_bootstrap(a: ArmCounts, b: ArmCounts, num_labels: int, metric: str, *,
                     seed_draws: np.ndarray) -> PairedResult:
    """Paired bootstrap of ``metric(a) - metric(b)`` over seeds and eval rows together.

    ``a`` and ``b`` hold the same seeds in the same order, built with the same
    row weights. ``seed_draws`` (B, S) are seed positions drawn with
    replacement, shared by every comparison with S seeds.
    """
    s = a.observed.shape[0]
    if b.observed.shape[0] != s or a.boot.shape[1] != b.boot.shape[1]:
        raise ValueError(f"arms differ in seeds or resamples: {a.boot.shape} vs {b.boot.shape}")
    if seed_draws.shape != (a.boot.shape[1], s):
        raise ValueError(f"seed_draws {seed_draws.shape} must be ({a.boot.shape[1]}, {s})")
    observed = arm_metric(a, num_labels, metric) - arm_metric(b, num_labels, metric)  # (S,)
    diff = (_metric_from_counts(a.boot, a.boot_totals[None, :], num_labels, metric)
            - _metric_from_counts(b.boot, b.boot_totals[None, :], num_labels, metric))  # (S, B)
    cols = np.arange(diff.shape[1])
    boot = diff[seed_draws.T, cols[None, :]].mean(axis=0)  # (B,)
    delta = float(observed.mean())
    lo, hi = np.percentile(boot, [2.5, 97.5])
    p = (1 + int(np.sum(np.abs(boot - delta) >= abs(delta) - 1e-12))) / (len(boot) + 1)
    return PairedResult(
        n_seeds=s, delta=delta, ci_low=float(min(lo, delta)), ci_high=float(max(hi, delta)),
        p_boot=float(min(1.0, p)), se=float(boot.std(ddof=1)),
        sd_seed=float(observed.std(ddof=1)) if s > 1 else float("nan"),
        var_rows=float(diff.mean(axis=0).var(ddof=1)),
    )


def seed_draws(n_boot: int, n_seeds: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n_seeds) seed positions drawn with replacement; the same for every call."""
    return np.random.default_rng([seed, n_seeds]).integers(0, n_seeds, size=(n_boot, n_seeds))


def paired_t(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test over seeds (``scipy.stats.ttest_rel``); NaN if undefined."""
    from scipy.stats import ttest_rel

    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a - b
    if len(d) < 2 or np.ptp(d) == 0:
        return float("nan") if len(d) < 2 or d[0] != 0 else 1.0
    return float(ttest_rel(a, b).pvalue)


def _z(alpha: float, power: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / 2) + norm.ppf(power))


def min_detectable_effect(sd_seed: float, var_rows: float, n_seeds: int, *, alpha: float = 0.05,
                          power: float = 0.8) -> float:
    """Smallest |delta| a two-sided level-``alpha`` test detects with probability ``power``."""
    return _z(alpha, power) * math.sqrt(sd_seed**2 / n_seeds + var_rows)


def seeds_needed(effect: float, sd_seed: float, var_rows: float, *, alpha: float = 0.05,
                 power: float = 0.8) -> int | None:
    """Seeds for :func:`min_detectable_effect` to reach ``effect``; None if the eval set alone forbids it."""
    room = (effect / _z(alpha, power)) ** 2 - var_rows
    if room <= 0:
        return None
    return max(2, math.ceil(sd_seed**2 / room))
