"""Paired comparisons of two training arms that see both seed and eval-set noise.

A selector's accuracy on SST-2's 872 validation rows moves by ~1.3 points
for reasons that have nothing to do with the selector: which rows happen to
be in the eval set. A paired t-test over a handful of seeds sees only the
seed-to-seed spread; both sources of noise must be in the interval (Dror et
al., "The Hitchhiker's Guide to Testing Statistical Significance in NLP",
ACL 2018).

The design is a seed × row table: arm A and arm B are trained on the same S
seeds and scored on the same n eval rows. Each cell gets the difference of
the two arms' contributions to the metric on that row (for accuracy, right
minus right; for macro-F1, precision and recall, the first-order
linearisation of the metric, so that a seed's row mean is exactly its
metric difference). The mean of the table is Δ, and its variance has three
parts, estimated without bias by the two-way random-effects ANOVA (rows
and seeds crossed, one observation per cell; e.g. Searle, Casella &
McCulloch, *Variance Components*, 1992, ch. 4):

    Var(Δ) = σ²_row / n + σ²_seed / S + σ²_error / (n S)
           = (MS_row + MS_seed - MS_error) / (n S).

The interval is ``Δ ± t · sqrt(Var)``, with t on Satterthwaite's degrees of
freedom for that combination of mean squares; p is the two-sided t test of
``Δ = 0``. Why not the bootstrap that resamples seeds and rows together: on
binary per-row outcomes it counts the error term three times (Owen, "The
pigeonhole bootstrap", Ann. Appl. Stat. 2007) -- on this project's trials its
standard error was 1.05-2x the unbiased one, so its intervals were too wide
and its tests too weak.

* **Holm–Bonferroni** (Holm, Scand. J. Statist. 6, 1979) adjusts a family of
  p-values (all selectors vs random at one fraction and metric) so that the
  chance of any false "beats random" stays below α.
* **Power**: of Var(Δ), the part ``σ²_row / n`` (``var_rows``) does not
  shrink with more seeds; the rest is ``sd_seed² / S``, ``sd_seed`` the
  spread of the per-seed differences. The smallest detectable effect at
  level α with power 1-β is ``(z_{1-α/2} + z_{1-β}) · sqrt(sd_seed² / S +
  var_rows)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dataselect.train.metrics import METRICS


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


def pseudo_values(y: np.ndarray, preds: np.ndarray, num_labels: int, metric: str) -> np.ndarray:
    """(S, n) per-row contributions whose row mean is each seed's ``metric`` (first order).

    ``ψ_si = M(m_s) + ∇M(m_s) · (x_si - m_s)``, ``x_si`` row i's indicator
    vector under seed s and ``m_s`` their mean: exact for accuracy (ψ is
    right / wrong), the delta-method linearisation of the macro metrics.
    """
    y = np.asarray(y, dtype=np.int64)
    preds = np.atleast_2d(np.asarray(preds, dtype=np.int64))
    x = np.stack([_indicators(y, p, num_labels) for p in preds]).astype(np.float64)  # (S, n, c)
    if metric == "accuracy":
        return x[..., 0]
    m = x.mean(axis=1)  # (S, c)
    value = _metric_from_counts(m, np.float64(1.0), num_labels, metric)  # (S,)
    h = 1e-6
    grad = np.empty_like(m)
    for j in range(m.shape[1]):  # central differences; the metrics are ratios of these means
        e = np.zeros(m.shape[1])
        e[j] = h
        grad[:, j] = (_metric_from_counts(m + e, np.float64(1.0), num_labels, metric)
                      - _metric_from_counts(m - e, np.float64(1.0), num_labels, metric)) / (2 * h)
    return value[:, None] + np.einsum("sc,snc->sn", grad, x - m[:, None, :])


@dataclass(frozen=True)
class PairedResult:
    """One arm against the baseline on one metric, over seed-matched runs and the same eval rows."""

    n_seeds: int
    delta: float
    """Observed mean over seeds of ``metric(arm) - metric(baseline)`` on the whole eval set."""
    ci_low: float
    ci_high: float
    p_value: float
    """Two-sided t test of Δ = 0 on the variance-components standard error."""
    se: float
    """Standard error of ``delta`` (seeds and rows): ``sqrt((MS_row + MS_seed - MS_error) / (n S))``."""
    df: float
    """Satterthwaite degrees of freedom of ``se``."""
    sd_seed: float
    """Sample std (ddof=1) of the per-seed differences: the seed-to-seed part."""
    var_rows: float
    """``σ²_row / n``: the part of Var(Δ) that more seeds do not shrink."""


def paired_difference(y: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray, num_labels: int,
                      metric: str, *, level: float = 0.95) -> PairedResult:
    """Δ of ``metric`` (arm A - arm B) with its interval and p-value, seeds and eval rows both noise.

    Parameters
    ----------
    y : (n,) int
        Gold labels of the eval rows.
    preds_a, preds_b : (S, n) int
        Each arm's predictions, row s from seed s (the same seeds, in the same order).
    """
    from scipy import stats

    a = pseudo_values(y, preds_a, num_labels, metric)
    b = pseudo_values(y, preds_b, num_labels, metric)
    if a.shape != b.shape:
        raise ValueError(f"arms differ in seeds or rows: {a.shape} vs {b.shape}")
    d = a - b
    per_seed = d.mean(axis=1)  # each seed's metric difference (pseudo-values average to the metric)
    delta = float(per_seed.mean())
    var, df, var_rows = variance_components(d)
    se = math.sqrt(var)
    if se == 0:
        half, p = 0.0, (1.0 if delta == 0 else 0.0)
    else:
        half = float(stats.t.ppf(0.5 + level / 2, df)) * se
        p = float(2 * stats.t.sf(abs(delta) / se, df))
    s = d.shape[0]
    return PairedResult(n_seeds=s, delta=delta, ci_low=delta - half, ci_high=delta + half, p_value=p, se=se,
                        df=df, sd_seed=float(per_seed.std(ddof=1)) if s > 1 else float("nan"),
                        var_rows=var_rows)


def variance_components(d: np.ndarray) -> tuple[float, float, float]:
    """``(Var(mean), Satterthwaite df, σ²_row / n)`` of a seed × row table ``d`` (S, n).

    Two-way crossed random effects, one cell each: ``Var = (MS_row + MS_seed
    - MS_error) / (n S)``, never below ``MS_error / (n S)`` (the error part
    alone, which no estimate of the others can cancel). With one seed, the
    paired-rows variance ``MS_row / n`` on ``n - 1`` df.
    """
    s, n = d.shape
    g = d.mean()
    rows = d.mean(axis=0)
    if s == 1:
        ms_row = float(((rows - g) ** 2).sum() / max(n - 1, 1))
        return ms_row / n, float(max(n - 1, 1)), ms_row / n
    seeds = d.mean(axis=1)
    ms_row = s * float(((rows - g) ** 2).sum()) / (n - 1)
    ms_seed = n * float(((seeds - g) ** 2).sum()) / (s - 1)
    ms_err = float(((d - seeds[:, None] - rows[None, :] + g) ** 2).sum()) / ((n - 1) * (s - 1))
    terms = [(ms_row, n - 1), (ms_seed, s - 1), (-ms_err, (n - 1) * (s - 1))]
    var = sum(m for m, _ in terms) / (n * s)
    floor = ms_err / (n * s)
    if var <= floor:
        var, terms = floor, [(ms_err, (n - 1) * (s - 1))]
    denom = sum((m / (n * s)) ** 2 / k for m, k in terms if k > 0)
    df = (var ** 2 / denom) if denom > 0 else float("inf")
    return var, float(df), max(ms_row - ms_err, 0.0) / (n * s)


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
