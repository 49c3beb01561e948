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
* **Power** is that of this very test: a t on an estimated Satterthwaite df,
  often near S - 1, at α = 0.05/m. A z formula ``(z_{1-α/2} + z_{1-β}) ·
  se`` ignores both and promised 80 % where the test had 20-57 %;
  :func:`power` simulates the design's mean squares instead, and
  :func:`min_detectable_effect` / :func:`seeds_needed` invert it. Of Var(Δ),
  the part ``σ²_row / n`` (``var_rows``) does not shrink with more seeds; the
  rest is ``sd_seed² / S``, ``sd_seed`` the spread of the per-seed
  differences.
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
    """Two-sided t test of Δ = 0 on the variance-components standard error (NaN under 2 seeds)."""
    se: float
    """Standard error of ``delta`` (seeds and rows): ``sqrt((MS_row + MS_seed - MS_error) / (n S))``."""
    df: float
    """Satterthwaite degrees of freedom of ``se``."""
    sd_seed: float
    """Sample std (ddof=1) of the per-seed differences: the seed-to-seed part."""
    var_rows: float
    """``σ²_row / n``: the part of Var(Δ) that more seeds do not shrink."""
    var_err: float = float("nan")
    """``σ²_error / n`` (``MS_error / n``): the seed × row interaction's share of one seed's Δ."""
    n_rows: int = 0
    """Eval rows in the table."""


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
    a = pseudo_values(y, preds_a, num_labels, metric)
    b = pseudo_values(y, preds_b, num_labels, metric)
    if a.shape != b.shape:
        raise ValueError(f"arms differ in seeds or rows: {a.shape} vs {b.shape}")
    return paired_table(a - b, level=level)


def paired_table(d: np.ndarray, *, level: float = 0.95) -> PairedResult:
    """The test of :func:`paired_difference` on a seed × row table of differences ``d`` (S, n).

    Under two seeds there is no estimate of the seed-to-seed variance, so no
    interval and no p-value: one seed pair's rows-only interval claimed
    significance 17 % of the time at a 2-point seed spread.
    """
    from scipy import stats

    d = np.atleast_2d(np.asarray(d, dtype=np.float64))
    s, n = d.shape
    per_seed = d.mean(axis=1)  # each seed's metric difference (pseudo-values average to the metric)
    delta = float(per_seed.mean())
    if s < 2:
        nan = float("nan")
        return PairedResult(n_seeds=s, delta=delta, ci_low=nan, ci_high=nan, p_value=nan, se=nan, df=nan,
                            sd_seed=nan, var_rows=nan, n_rows=n)
    c = variance_components(d)
    se = math.sqrt(c.var)
    if se == 0:
        half, p = 0.0, (1.0 if delta == 0 else 0.0)
    else:
        half = float(stats.t.ppf(0.5 + level / 2, c.df)) * se
        p = float(2 * stats.t.sf(abs(delta) / se, c.df))
    return PairedResult(n_seeds=s, delta=delta, ci_low=delta - half, ci_high=delta + half, p_value=p, se=se,
                        df=c.df, sd_seed=float(per_seed.std(ddof=1)), var_rows=c.var_rows,
                        var_err=c.var_err, n_rows=n)


@dataclass(frozen=True)
class Components:
    """Variance of a seed × row table's mean, split as the two-way random-effects model does."""

    var: float
    """Estimated Var(mean), floored at the error part ``MS_error / (n S)``."""
    df: float
    """Satterthwaite degrees of freedom of ``var``."""
    var_rows: float
    """``σ²_row / n``, the part more seeds do not shrink (``(MS_row - MS_error) / (n S)``, ≥ 0)."""
    var_err: float
    """``σ²_error / n`` = ``MS_error / n``."""


def combine_mean_squares(ms_row, ms_seed, ms_err, n: int, s: int):
    """``(Var(mean), df)`` from the three mean squares of an S × n table (arrays broadcast).

    ``Var = (MS_row + MS_seed - MS_error) / (n S)`` on Satterthwaite's df,
    never below ``MS_error / (n S)`` (the error part alone, which no estimate
    of the others can cancel). Where that floor binds (the seed part
    estimates at or below zero), the floored variance keeps Satterthwaite's
    df over the positive terms, MS_row and MS_seed (``var² / Σ (MS/nS)² /
    k``), which stays near S - 1 while MS_seed carries weight: taking the
    floor's own (n-1)(S-1) df (15,484 at 5 seeds × 3,872 rows) made a
    z interval of it, which covered 64-92 % of the time where it bound at 3
    seeds. The report's test and the power simulation both call this, so they
    cannot drift apart.
    """
    ms_row, ms_seed, ms_err = (np.asarray(x, dtype=np.float64) for x in (ms_row, ms_seed, ms_err))
    k_row, k_seed, k_err = n - 1, s - 1, (n - 1) * (s - 1)
    ns = float(n * s)
    raw = (ms_row + ms_seed - ms_err) / ns
    floor = ms_err / ns
    floored = raw <= floor
    var = np.where(floored, floor, raw)
    full = (ms_row / ns) ** 2 / k_row + (ms_seed / ns) ** 2 / k_seed + (ms_err / ns) ** 2 / k_err
    positive = (ms_row / ns) ** 2 / k_row + (ms_seed / ns) ** 2 / k_seed
    denom = np.where(floored, positive, full)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denom > 0, var**2 / denom, np.inf)
    return var, df


def variance_components(d: np.ndarray) -> Components:
    """The variance parts of a seed × row table ``d`` (S ≥ 2, n): :class:`Components`.

    Two-way crossed random effects, one cell each (:func:`combine_mean_squares`).
    """
    s, n = d.shape
    if s < 2 or n < 2:
        raise ValueError(f"a variance needs at least 2 seeds and 2 rows; got {s} × {n}")
    g = d.mean()
    rows = d.mean(axis=0)
    seeds = d.mean(axis=1)
    ms_row = s * float(((rows - g) ** 2).sum()) / (n - 1)
    ms_seed = n * float(((seeds - g) ** 2).sum()) / (s - 1)
    ms_err = float(((d - seeds[:, None] - rows[None, :] + g) ** 2).sum()) / ((n - 1) * (s - 1))
    var, df = combine_mean_squares(ms_row, ms_seed, ms_err, n, s)
    return Components(var=float(var), df=float(df), var_rows=max(ms_row - ms_err, 0.0) / (n * s),
                      var_err=ms_err / n)


def paired_t(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test over seeds (``scipy.stats.ttest_rel``); NaN if undefined."""
    from scipy.stats import ttest_rel

    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a - b
    if len(d) < 2 or np.ptp(d) == 0:
        return float("nan") if len(d) < 2 or d[0] != 0 else 1.0
    return float(ttest_rel(a, b).pvalue)


POWER_DRAWS = 20_000
"""Simulated studies behind each power figure (common random numbers: the figure is a smooth,
deterministic function of the design)."""


def power(effect: float, sd_seed: float, var_rows: float, n_seeds: int, *, n_rows: int | None = None,
          var_err: float | None = None, alpha: float = 0.05) -> float:
    """Probability that the report's own test rejects Δ = 0 at level ``alpha`` when Δ = ``effect``.

    Not a z (or fixed-df t) formula: the test is a t on an *estimated*
    Satterthwaite df that is often near S - 1 (a critical value of 9 at
    α = 0.05/60 and 4 df, against z's 3.3). So the design is simulated: the
    three mean squares of the two-way table are drawn from their scaled χ²
    laws (rows: n - 1 df, seeds: S - 1, error: (n - 1)(S - 1)), combined by
    :func:`combine_mean_squares` exactly as the report combines them, and,
    given them, the power is the normal probability that |Δ̂| clears
    ``t_crit(df̂) · se_hat`` (Δ̂ is independent of the mean squares in the
    balanced normal model). Inputs are :class:`PairedResult`'s parts:
    ``sd_seed`` the spread of per-seed Δ, ``var_rows`` = σ²_row / n,
    ``var_err`` = σ²_error / n (default: equal to ``var_rows``, capped at
    ``sd_seed²``), ``n_rows`` the eval rows (default: so many that the row
    and error terms are known exactly).
    """
    if n_seeds < 2:
        return float("nan")
    from scipy import stats

    crit = _critical(sd_seed, var_rows, n_seeds, n_rows, var_err, alpha)
    sd = math.sqrt(sd_seed**2 / n_seeds + var_rows)
    if sd == 0:
        return 1.0 if effect != 0 else alpha
    return float(np.mean(stats.norm.sf((crit - effect) / sd) + stats.norm.cdf((-crit - effect) / sd)))


def _critical(sd_seed: float, var_rows: float, s: int, n: int | None, var_err: float | None,
              alpha: float) -> np.ndarray:
    """Per simulated study, the |Δ̂| the test needs: ``t_{1-α/2}(df̂) · se_hat``."""
    from scipy import stats

    v_err = var_rows if var_err is None or not np.isfinite(var_err) else var_err
    v_err = min(max(v_err, 0.0), sd_seed**2) if sd_seed > 0 else max(v_err, 0.0)
    n_eff = n if n is not None and n > 1 else 10**9
    ns = float(n_eff * s)
    # Expected mean squares, each divided by n S: rows σ²_e/(nS) + σ²_r/n, seeds sd_seed²/S, error σ²_e/(nS).
    e_row, e_seed, e_err = v_err / s + var_rows, sd_seed**2 / s, v_err / s
    rng = np.random.default_rng(20_240_601)
    k_row, k_seed, k_err = n_eff - 1, s - 1, (n_eff - 1) * (s - 1)
    draw = (lambda k: rng.chisquare(k, POWER_DRAWS) / k) if n is not None else (lambda k: np.ones(POWER_DRAWS))
    ms_row = ns * e_row * draw(k_row)
    ms_seed = ns * e_seed * rng.chisquare(k_seed, POWER_DRAWS) / k_seed
    ms_err = ns * e_err * draw(k_err)
    var, df = combine_mean_squares(ms_row, ms_seed, ms_err, n_eff, s)
    return stats.t.isf(alpha / 2, df) * np.sqrt(var)


def min_detectable_effect(sd_seed: float, var_rows: float, n_seeds: int, *, n_rows: int | None = None,
                          var_err: float | None = None, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest |Δ| the report's test (:func:`power`) detects with probability ``power``.

    ``inf`` under two seeds (no test is run there).
    """
    if n_seeds < 2:
        return float("inf")
    from scipy.optimize import brentq

    crit = _critical(sd_seed, var_rows, n_seeds, n_rows, var_err, alpha)
    sd = math.sqrt(sd_seed**2 / n_seeds + var_rows)
    if sd == 0:
        return 0.0
    from scipy import stats

    def gap(effect: float) -> float:
        return float(np.mean(stats.norm.sf((crit - effect) / sd) + stats.norm.cdf((-crit - effect) / sd))) - power

    hi = float(np.quantile(crit, power)) + 4 * sd  # power there exceeds the target
    while gap(hi) < 0:
        hi *= 2
    return float(brentq(gap, 0.0, hi, xtol=1e-7 * sd))


def seeds_needed(effect: float, sd_seed: float, var_rows: float, *, n_rows: int | None = None,
                 var_err: float | None = None, alpha: float = 0.05, power: float = 0.8,
                 max_seeds: int = 1000) -> int | None:
    """Fewest seeds (≥ 2) for :func:`min_detectable_effect` to reach ``effect``; None if none up to
    ``max_seeds`` does (the eval set's own noise alone forbids it)."""
    def mde(s: int) -> float:
        return min_detectable_effect(sd_seed, var_rows, s, n_rows=n_rows, var_err=var_err, alpha=alpha,
                                     power=power)

    if mde(max_seeds) > effect:
        return None
    lo, hi = 2, max_seeds  # mde(hi) <= effect; shrinks with seeds
    if mde(lo) <= effect:
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if mde(mid) <= effect else (mid, hi)
    return hi
