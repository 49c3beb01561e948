"""The report's statistics and tables: every selector against ``random``, and the sentences that say it.

Statistics (:mod:`dataselect.report.stats`): every selector × fraction × metric
against ``random`` at the same fraction, over seed-matched pairs: the
observed mean difference, its 95 % interval and p-value with seeds and eval
rows both as noise (two-way variance components), the seed-paired t-test
for comparison, and Holm–Bonferroni over all selectors of one metric and
fraction. ``significant`` means Holm-adjusted p < 0.05. Written to
``report/summary.csv``; report.md opens with one sentence per fraction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dataselect.report.results import BASELINE_KEY, FULL_KEY, STATUS_OK
from dataselect.train.metrics import METRICS

# --------------------------------------------------------------------------- stats
SUMMARY_COLUMNS = ("metric", "selector", "fraction", "n_seeds", "mean", "std", "delta", "ci_low",
                   "ci_high", "p_t", "p_value", "p_holm", "significant", "se", "df", "sd_seed", "var_rows",
                   "var_err", "n_rows", "seeds")
ALPHA = 0.05


class _Arms:
    """Per (selector, fraction): the seeds with per-row predictions on the common eval rows, read once.

    A trial's predictions are realigned to the common rows by id (the same ids
    in another order are the same rows); a trial whose ids are not the common
    set is left out, and :attr:`left_out` says which and why.
    """

    def __init__(self, ok: pd.DataFrame, preds: dict[str, pd.DataFrame], num_labels: int):
        self.ok, self.preds, self.k = ok, preds, num_labels
        self.cache: dict[tuple[str, float], tuple[list[int], np.ndarray] | None] = {}
        self.left_out: dict[str, str] = {}
        """``{trial: reason}`` of finished trials whose predictions could not be paired."""
        trials = ok["trial"] if "trial" in ok and preds else []
        first = next((preds[t] for t in trials if t in preds), None)
        self.ids = None if first is None else first["id"].to_numpy(np.int64)
        self.y = None if first is None else first["label"].to_numpy(np.int64)

    def _aligned(self, trial: str) -> np.ndarray | None:
        """The trial's predictions in the common row order, or None (reason in :attr:`left_out`)."""
        p = self.preds.get(trial)
        if p is None:
            self.left_out[trial] = "no per-row predictions"
            return None
        ids = p["id"].to_numpy(np.int64)
        if np.array_equal(ids, self.ids):
            return p["pred"].to_numpy(np.int64)
        if len(ids) == len(self.ids) and len(np.unique(ids)) == len(ids) and np.isin(self.ids, ids).all():
            return p.set_index("id")["pred"].reindex(self.ids).to_numpy(np.int64)
        self.left_out[trial] = (f"predictions on other eval rows ({len(ids):,} rows, "
                                f"{int(np.isin(ids, self.ids).sum()):,} of the {len(self.ids):,} common ones)")
        return None

    def get(self, sel: str, frac: float) -> tuple[list[int], np.ndarray] | None:
        """(seeds, (S, n) predictions) of every finished seed with predictions on the common rows."""
        key = (sel, frac)
        if self.ids is None:  # no trial has per-row predictions
            return None
        if key not in self.cache:
            g = self.ok[(self.ok["selector"] == sel) & (self.ok["fraction"] == frac)].sort_values("seed")
            seeds, rows = [], []
            for t, sd in zip(g["trial"], g["seed"], strict=True):
                pred = self._aligned(t)
                if pred is not None:
                    seeds.append(int(sd))
                    rows.append(pred)
            self.cache[key] = (seeds, np.stack(rows)) if rows else None
        return self.cache[key]


def _seed_list(seeds: list[int]) -> str:
    return ",".join(str(x) for x in seeds)


def summarize(df: pd.DataFrame, metric: str, preds: dict[str, pd.DataFrame] | None = None, *,
              num_labels: int | None = None, holm_family: str = "fraction",
              _arms: _Arms | None = None) -> pd.DataFrame:
    """Per selector × fraction: mean ± std over seeds and the comparison with ``random``.

    Columns are :data:`SUMMARY_COLUMNS` plus ``n_pairs``. ``ci_low``,
    ``ci_high``, ``p_value``, ``se``, ``df``, ``sd_seed``, ``var_rows``,
    ``var_err`` come from :func:`~dataselect.report.stats.paired_difference`
    over ``preds`` (``{trial: predictions frame}``; NaN without them), on the
    seeds both arms have predictions for, and so do ``delta`` and ``p_t``
    (``seeds`` lists them): one row never mixes two seed sets. Without any
    predictions ``delta`` comes from the trials' metrics, NaN metrics dropped
    before pairing. Under two paired seeds a cell gets no p-value and is in no Holm
    family. ``p_holm`` adjusts ``p_value`` over all selectors at one fraction
    (``holm_family="fraction"``) or over every comparison of the study
    (``"study"``).
    """
    from dataselect.report.stats import holm, paired_difference, paired_t

    ok = df[df["status"] == STATUS_OK]
    if num_labels is None:
        num_labels = int(max((int(p["label"].max()) for p in (preds or {}).values()), default=1)) + 1
    arms = _arms or _Arms(ok, preds or {}, max(num_labels, 2))
    base = ok[ok["selector"] == BASELINE_KEY]
    out = []
    for (sel, frac), g in ok.groupby(["selector", "fraction"], sort=True):
        vals = g.sort_values("seed")[metric].to_numpy(float)
        vals = vals[np.isfinite(vals)]
        row: dict[str, Any] = {"metric": metric, "selector": sel, "fraction": frac, "n_seeds": len(vals),
                               "mean": float(vals.mean()) if len(vals) else float("nan"),
                               "std": float(vals.std(ddof=1)) if len(vals) > 1 else float("nan"),
                               "n_pairs": 0, "seeds": "", "n_rows": 0}
        row.update({c: float("nan") for c in ("delta", "ci_low", "ci_high", "p_t", "p_value", "se", "df",
                                              "sd_seed", "var_rows", "var_err")})
        if sel not in (BASELINE_KEY, FULL_KEY):
            b = base[base["fraction"] == frac].set_index("seed")[metric].astype(float).dropna()
            sv = g.set_index("seed")[metric].astype(float).dropna()
            common = sorted(set(sv.index) & set(b.index))
            arm, ref = arms.get(sel, frac), arms.get(BASELINE_KEY, frac)
            if arm and ref:
                both = sorted(set(arm[0]) & set(ref[0]) & set(common))
                if both:
                    ia = [arm[0].index(x) for x in both]
                    ib = [ref[0].index(x) for x in both]
                    r = paired_difference(arms.y, arm[1][ia], ref[1][ib], arms.k, metric)
                    row.update(delta=r.delta, ci_low=r.ci_low, ci_high=r.ci_high, p_value=r.p_value, se=r.se, df=r.df,
                               sd_seed=r.sd_seed, var_rows=r.var_rows, var_err=r.var_err, n_rows=r.n_rows)
                common = both
            elif arms.ids is not None:  # predictions exist, but not for both arms here: no paired cell
                common = []
            row["n_pairs"] = len(common)
            row["seeds"] = _seed_list(common)
            if common:
                a_v, b_v = sv.loc[common].to_numpy(float), b.loc[common].to_numpy(float)
                if not np.isfinite(row["delta"]):
                    row["delta"] = float((a_v - b_v).mean())
                row["p_t"] = paired_t(a_v, b_v)
        out.append(row)
    res = pd.DataFrame(out)
    if res.empty:
        return pd.DataFrame(columns=[*SUMMARY_COLUMNS, "n_pairs"])
    res["p_holm"] = np.nan
    groups = res.groupby("fraction").groups.values() if holm_family == "fraction" else [res.index]
    for idx in groups:
        res.loc[idx, "p_holm"] = holm(res.loc[idx, "p_value"].to_numpy(float))
    res["significant"] = res["p_holm"] < ALPHA
    return res[[*SUMMARY_COLUMNS, "n_pairs"]]


def summary_table(df: pd.DataFrame, preds: dict[str, pd.DataFrame], num_labels: int,
                  holm_family: str = "fraction") -> pd.DataFrame:
    """:func:`summarize` for every metric, predictions read once: the rows of ``summary.csv``.

    ``attrs["left_out"]`` is ``{trial: reason}`` of the finished trials that no
    interval could use (see :class:`_Arms`).
    """
    ok = df[df["status"] == STATUS_OK]
    arms = _Arms(ok, preds, num_labels)
    res = pd.concat([summarize(df, m, holm_family=holm_family, _arms=arms) for m in METRICS],
                    ignore_index=True)
    res.attrs["left_out"] = dict(sorted(arms.left_out.items()))
    return res


def uneven_seeds(summary: pd.DataFrame, seeds: list[int] | None, metric: str = "accuracy") -> list[str]:
    """Report lines for the comparisons that used other seeds than the study's (``seeds``)."""
    if not seeds or "seeds" not in summary:
        return []
    want = _seed_list(sorted(int(x) for x in seeds))
    s = summary[(summary["metric"] == metric) & ~summary["selector"].isin([BASELINE_KEY, FULL_KEY])
                & (summary["fraction"] < 1)]
    odd = s[s["seeds"].fillna("").astype(str) != want]
    return [f"| {r['selector']} | {r['fraction'] * 100:g} % | {r['seeds'] or 'none'} |"
            for r in odd.to_dict("records")]


@dataclass(frozen=True)
class Power:
    """What one fraction's comparisons can resolve (medians over its selectors)."""

    n_seeds: int
    sd_seed: float
    var_rows: float
    alpha: float
    mde: float
    """Smallest |Δ| the report's own test detects with 80 % power at level ``alpha``."""
    var_err: float = float("nan")
    n_rows: int | None = None


def _median(g: pd.DataFrame, col: str) -> float:
    return float(np.nanmedian(g[col].astype(float))) if col in g and g[col].notna().any() else float("nan")


def power_by_fraction(summary: pd.DataFrame, metric: str = "accuracy",
                      holm_family: str = "fraction") -> dict[float, Power]:
    """Per fraction: the design's minimum detectable effect on ``metric``.

    Uses the median seed spread and eval-row variance over the fraction's
    comparisons, α = 0.05 / m (the first step of Holm over the m comparisons
    of its family: the fraction's selectors, or the whole study's), 80 % power
    of the report's t test (:func:`~dataselect.report.stats.min_detectable_effect`).
    """
    from dataselect.report.stats import min_detectable_effect

    s = summary[(summary["metric"] == metric) & np.isfinite(summary["p_value"].astype(float))]
    m_study = len(s)
    out = {}
    for frac, g in s.groupby("fraction", sort=True):
        n = int(g["n_pairs"].median())
        sd = _median(g, "sd_seed")
        sd = 0.0 if not np.isfinite(sd) else sd
        vr, ve = float(g["var_rows"].median()), _median(g, "var_err")
        rows = int(_median(g, "n_rows")) if np.isfinite(_median(g, "n_rows")) and _median(g, "n_rows") > 0 \
            else None
        alpha = ALPHA / (len(g) if holm_family == "fraction" else m_study)
        mde = min_detectable_effect(sd, vr, n, n_rows=rows, var_err=ve, alpha=alpha)
        out[float(frac)] = Power(n, sd, vr, alpha, mde, ve, rows)
    return out


def power_lines(summary: pd.DataFrame, metric: str = "accuracy", effect: float = 0.01,
                holm_family: str = "fraction") -> list[str]:
    """Per fraction: the smallest delta this design detects, and seeds for a ``effect`` gain."""
    from dataselect.report.stats import seeds_needed

    lines = []
    for frac, p in power_by_fraction(summary, metric, holm_family).items():
        need = seeds_needed(effect, p.sd_seed, p.var_rows, n_rows=p.n_rows, var_err=p.var_err, alpha=p.alpha)
        need_s = (f"a {effect * 100:g}-point effect would need {need} seeds" if need is not None else
                  f"no number of seeds up to 1,000 reaches a {effect * 100:g}-point effect: the eval "
                  f"set's own noise (±{np.sqrt(p.var_rows) * 100:.2f} points per comparison) is too large")
        lines.append(f"- {frac * 100:g} %: with {p.n_seeds} seeds the design detects |Δ {metric}| ≥ "
                     f"{p.mde * 100:.2f} points (80 % power of the report's t test on its estimated df, "
                     f"simulated; α = 0.05/{round(ALPHA / p.alpha)}, median seed sd {p.sd_seed * 100:.2f}, "
                     f"eval-row sd {np.sqrt(p.var_rows) * 100:.2f} points); {need_s}.")
    return lines


def _pts(x: float) -> str:
    return f"{x * 100:+.1f}"


def conclusions(summary: pd.DataFrame, budgets: dict[float, int], metric: str = "accuracy",
                holm_family: str = "fraction") -> list[str]:
    """One sentence per fraction: who beats random after Holm, by how much, or what is ruled out.

    The comparison count it names is the Holm family's: the fraction's, or the
    whole study's with ``holm_family="study"``.
    """
    s = summary[(summary["metric"] == metric) & ~summary["selector"].isin([BASELINE_KEY, FULL_KEY])]
    n_study = int(np.isfinite(s["p_value"].astype(float)).sum())
    lines = []
    for frac, g in s.groupby("fraction", sort=True):
        rows = f" ({budgets[frac]:,} rows)" if frac in budgets else ""
        tested = g[np.isfinite(g["p_value"].astype(float))]
        head = f"At {frac * 100:g} %{rows}"
        if tested.empty:
            lines.append(f"- {head}: no per-row predictions, so no corrected comparison with random "
                         "(paired t-test only, see the tables).")
            continue
        win = tested[tested["significant"] & (tested["delta"] > 0)].sort_values("delta", ascending=False)
        lose = tested[tested["significant"] & (tested["delta"] < 0)]
        if not win.empty:
            parts = [f"`{r.selector}` {_pts(r.delta)} points [{_pts(r.ci_low)}, {_pts(r.ci_high)}]"
                     for r in win.itertuples()]
            text = (f"- {head}, **{len(win)} of {len(tested)} selectors beat random** after Holm "
                    f"correction ({metric}, 95 % CI): " + "; ".join(parts))
        else:
            best = tested.sort_values("delta", ascending=False).iloc[0]
            family = (f"{len(tested)} comparisons" if holm_family == "fraction"
                      else f"{n_study} comparisons over all fractions")
            text = (f"- {head}, **no selector beats random** after Holm correction ({family}); "
                    f"the best, `{best.selector}`, is {_pts(best.delta)} points "
                    f"[{_pts(best.ci_low)}, {_pts(best.ci_high)}], and no interval reaches above "
                    f"{_pts(tested['ci_high'].max())} points")
        if not lose.empty:
            text += f"; {len(lose)} {'is' if len(lose) == 1 else 'are'} significantly worse than random"
        lines.append(text + ".")
    return lines


def top_rows(summary: pd.DataFrame, metric: str, n: int = 5) -> list[str]:
    """The ``n`` largest Δ vs random per fraction as aligned plain-text rows (for the console)."""
    s = summary[(summary["metric"] == metric) & ~summary["selector"].isin([BASELINE_KEY, FULL_KEY])]
    s = s[np.isfinite(s["delta"].astype(float))]
    if s.empty:
        return []
    width = max(8, *(len(str(x)) for x in s["selector"]))
    lines = [f"  {'fraction':>8}  {'selector':<{width}}  {'Δ ' + metric:>12}  {'95 % CI':>15}  {'p (Holm)':>8}"]
    for frac, g in s.groupby("fraction", sort=True):
        for r in g.sort_values("delta", ascending=False).head(n).itertuples():
            ci = (f"[{_pts(r.ci_low)}, {_pts(r.ci_high)}]" if np.isfinite(r.ci_low) else "n/a")
            lines.append(f"  {frac * 100:>7g}%  {r.selector:<{width}}  {_pts(r.delta):>12}  {ci:>15}  "
                         f"{_p(r.p_holm):>8}{'  *' if r.significant else ''}")
    return lines


def md_cell(text: Any) -> str:
    """A table cell that holds any name: ``|`` escaped, line breaks as spaces."""
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def fmt_num(x: float, digits: int = 4) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _fmt_signed(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:+.4f}"


def format_mean_std(mean: float, std: float) -> str:
    """``0.8123 ± 0.0100`` (std ``n/a`` with one seed): the string report.md uses."""
    return f"{fmt_num(mean)} ± {fmt_num(std)}"


def _p(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def metric_table(summary: pd.DataFrame, metric: str, marks: dict[str, str] | None = None) -> list[str]:
    marks = marks or {}
    s = summary[summary["metric"] == metric]
    lines = [f"### {metric}", "",
             "| selector | fraction | n seeds | mean ± std | Δ vs random | 95 % CI | "
             "p (paired t) | p | p (Holm) | pairs |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in s[s["selector"] != FULL_KEY].iterrows():
        if r["selector"] == BASELINE_KEY:
            delta, ci, pt, pb, ph = "(baseline)", "—", "—", "—", "—"
        else:
            delta = _fmt_signed(r["delta"]) if r["n_pairs"] else "n/a"
            if r["significant"]:
                delta = f"**{delta}**"
            ci = (f"[{_fmt_signed(r['ci_low'])}, {_fmt_signed(r['ci_high'])}]"
                  if np.isfinite(r["ci_low"]) else "n/a")
            pt, pb, ph = _p(r["p_t"]), _p(r["p_value"]), _p(r["p_holm"])
        lines.append(f"| {md_cell(r['selector'])}{marks.get(r['selector'], '')} | {r['fraction']:g} | {r['n_seeds']} | "
                     f"{format_mean_std(r['mean'], r['std'])} | {delta} | {ci} | {pt} | {pb} | {ph} | "
                     f"{r['n_pairs'] or '—'} |")
    for _, r in s[s["selector"] == FULL_KEY].iterrows():
        lines.append(f"| **full (whole pool)** | {r['fraction']:g} | {r['n_seeds']} | "
                     f"{format_mean_std(r['mean'], r['std'])} | reference | — | — | — | — | — |")
    return [*lines, ""]
