"""Study report from the Tune experiment on disk: results, statistics, subsets, figures.

Everything is read back from files (each trial's ``params.json``,
``result.json`` and ``error.txt`` in ``<study_dir>/tune/<name>/``; its
``predictions.parquet`` and ``kept.parquet`` in ``<study_dir>/trials/``;
the sweep's ``study.json``), never from a live sweep, so ``dataselect
report`` can rebuild it any time, also after a crash or on another machine.

Statistics (:mod:`dataselect.stats`): every selector × fraction × metric
against ``random`` at the same fraction, over seed-matched pairs: the
observed mean difference, a 95 % paired-bootstrap interval and p-value that
resample seeds and eval rows together, the seed-paired t-test for
comparison, and Holm–Bonferroni over all selectors of one metric and
fraction. ``significant`` means Holm-adjusted bootstrap p < 0.05. Written to
``report/summary.csv``; report.md opens with one sentence per fraction.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dataselect.metrics import METRICS
from dataselect.subsets import share_column

log = logging.getLogger(__name__)

FULL_KEY = "full"
BASELINE_KEY = "random"
STATUS_OK = "TERMINATED"


# --------------------------------------------------------------------------- collect
def _experiment_dir(study: Path, meta: dict[str, Any]) -> Path:
    tune_dir = study / "tune"
    name = meta.get("name")
    if name and (tune_dir / name).is_dir():
        return tune_dir / name
    cands = [p for p in tune_dir.glob("*") if p.is_dir() and ".prev-" not in p.name] if tune_dir.is_dir() else []
    if len(cands) == 1:
        return cands[0]
    from dataselect.errors import UserError

    raise UserError(f"study_dir: no single Tune experiment under {tune_dir} (found {[p.name for p in cands]})")


def _last_json_line(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    last = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                last = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a crash
                continue
    return last


def _error_line(path: Path) -> str | None:
    if not path.is_file():
        return None
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    # Tune's error.txt ends with the innermost exception line ("RuntimeError: ...").
    return lines[-1][:500] if lines else "unknown error"


def count_column(label_name: str) -> str:
    """``n[<name>]``: the results column of one class's row count in a subset.

    Not ``n_<name>``: a class called ``train`` would overwrite ``n_train``.
    """
    return f"n[{label_name}]"


def collect_results(exp_dir: str | Path, label_names: list[str] | None = None) -> pd.DataFrame:
    """One row per trial folder of a Tune experiment.

    ``status`` is ``TERMINATED`` (metrics reported), ``ERROR`` (error.txt,
    no metrics) or ``INCOMPLETE`` (started, nothing reported yet).
    """
    rows = []
    for tdir in sorted(p for p in Path(exp_dir).iterdir() if (p / "params.json").is_file()):
        params = json.loads((tdir / "params.json").read_text())
        params = params.get("run", params)  # see sweep.trial_runs
        cell, seed = params.get("cell", {}), params.get("seed")
        res = _last_json_line(tdir / "result.json") or {}
        # A trial's own error is reported as a result (sweep.run_trial_reported), not raised.
        err = res.get("trial_error") or _error_line(tdir / "error.txt")
        ok = "accuracy" in res
        row: dict[str, Any] = {
            "trial": tdir.name,
            "selector": cell.get("selector"),
            "name": cell.get("name"),
            "params": json.dumps(cell.get("params", {}), sort_keys=True),
            "fraction": cell.get("fraction"),
            "seed": seed,
            "status": STATUS_OK if ok else ("ERROR" if err else "INCOMPLETE"),
            "error": None if ok else err,
            "budget": res.get("budget"),
            "n_train": res.get("n_train"),
        }
        counts = res.get("class_counts") or []
        names = label_names or [str(i) for i in range(len(counts))]
        for i, lab in enumerate(names):
            row[count_column(lab)] = counts[i] if i < len(counts) else None
        row["missing_classes"] = json.dumps([names[i] if i < len(names) else i
                                             for i in res.get("missing_classes", [])]) if ok else None
        for m in METRICS:
            row[m] = res.get(m)
        for k in ("train_loss", "selection_seconds", "train_seconds", "eval_seconds", "mode", "model",
                  "node_id", "selection_info", "reads_target"):
            row[k] = res.get(k)
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for c in (*METRICS, "fraction", "selection_seconds", "train_seconds", "eval_seconds", "train_loss"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df.sort_values(["selector", "fraction", "seed"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- per-row files
def load_trial_frames(study: Path, trials: list[str], name: str) -> dict[str, pd.DataFrame]:
    """``trials/<trial>/<name>`` for each trial that has it (predictions or kept rows)."""
    out = {}
    for t in trials:
        path = study / "trials" / t / name
        if path.is_file():
            try:
                out[t] = pd.read_parquet(path)
            except (OSError, ValueError) as err:
                log.warning("report: cannot read %s (%s); left out", path, err)
    return out


# --------------------------------------------------------------------------- stats
SUMMARY_COLUMNS = ("metric", "selector", "fraction", "n_seeds", "mean", "std", "delta", "ci_low",
                   "ci_high", "p_t", "p_boot", "p_holm", "significant", "se", "sd_seed", "var_rows")
ALPHA = 0.05


class _Arms:
    """Bootstrap indicator sums per (selector, fraction), computed once and shared by all metrics."""

    def __init__(self, ok: pd.DataFrame, preds: dict[str, pd.DataFrame], num_labels: int, n_boot: int,
                 seed: int):
        from dataselect.stats import row_weights

        self.ok, self.preds, self.k, self.n_boot, self.seed = ok, preds, num_labels, n_boot, seed
        self.cache: dict[tuple[str, float], tuple[list[int], Any] | None] = {}
        trials = ok["trial"] if "trial" in ok and preds else []
        first = next((preds[t] for t in trials if t in preds), None)
        self.ids = None if first is None else first["id"].to_numpy(np.int64)
        self.y = None if first is None else first["label"].to_numpy(np.int64)
        self.weights = (None if self.ids is None
                        else row_weights(len(self.ids), n_boot, np.random.default_rng(seed)))

    def get(self, sel: str, frac: float) -> tuple[list[int], Any] | None:
        """(seeds, ArmCounts) of every finished seed with predictions on the common eval rows."""
        from dataselect.stats import arm_counts

        key = (sel, frac)
        if self.ids is None:  # no trial has per-row predictions
            return None
        if key not in self.cache:
            g = self.ok[(self.ok["selector"] == sel) & (self.ok["fraction"] == frac)].sort_values("seed")
            seeds, rows = [], []
            for t, sd in zip(g["trial"], g["seed"], strict=True):
                p = self.preds.get(t)
                if p is None or not np.array_equal(p["id"].to_numpy(), self.ids):
                    continue
                seeds.append(int(sd))
                rows.append(p["pred"].to_numpy(np.int64))
            self.cache[key] = (seeds, arm_counts(self.y, np.stack(rows), self.weights, self.k)) if rows else None
        return self.cache[key]


def summarize(df: pd.DataFrame, metric: str, preds: dict[str, pd.DataFrame] | None = None, *,
              num_labels: int | None = None, n_boot: int | None = None, seed: int = 0,
              _arms: _Arms | None = None) -> pd.DataFrame:
    """Per selector × fraction: mean ± std over seeds and the comparison with ``random``.

    Columns are :data:`SUMMARY_COLUMNS` plus ``n_pairs``. ``delta``, ``p_t``
    come from the trials' metrics (seed-matched pairs); ``ci_low``,
    ``ci_high``, ``p_boot``, ``se``, ``sd_seed``, ``var_rows`` from the paired
    bootstrap over ``preds`` (``{trial: predictions frame}``; NaN without
    them); ``p_holm`` adjusts ``p_boot`` over all selectors at one fraction.
    """
    from dataselect.stats import N_BOOT, holm, paired_bootstrap, paired_t, seed_draws

    ok = df[df["status"] == STATUS_OK]
    if num_labels is None:
        num_labels = int(max((int(p["label"].max()) for p in (preds or {}).values()), default=1)) + 1
    arms = _arms or _Arms(ok, preds or {}, max(num_labels, 2), n_boot or N_BOOT, seed)
    base = ok[ok["selector"] == BASELINE_KEY]
    out = []
    for (sel, frac), g in ok.groupby(["selector", "fraction"], sort=True):
        vals = g.sort_values("seed")[metric].to_numpy(float)
        row: dict[str, Any] = {"metric": metric, "selector": sel, "fraction": frac, "n_seeds": len(vals),
                               "mean": float(vals.mean()),
                               "std": float(vals.std(ddof=1)) if len(vals) > 1 else float("nan"),
                               "n_pairs": 0}
        row.update({c: float("nan") for c in ("delta", "ci_low", "ci_high", "p_t", "p_boot", "se",
                                              "sd_seed", "var_rows")})
        if sel not in (BASELINE_KEY, FULL_KEY):
            b = base[base["fraction"] == frac].set_index("seed")[metric]
            sv = g.set_index("seed")[metric]
            common = sorted(set(sv.index) & set(b.index))
            row["n_pairs"] = len(common)
            if common:
                a_v, b_v = sv.loc[common].to_numpy(float), b.loc[common].to_numpy(float)
                row["delta"] = float((a_v - b_v).mean())
                row["p_t"] = paired_t(a_v, b_v)
            arm, ref = arms.get(sel, frac), arms.get(BASELINE_KEY, frac)
            if arm and ref:
                both = sorted(set(arm[0]) & set(ref[0]))
                if both:
                    ia = np.array([arm[0].index(x) for x in both])
                    ib = np.array([ref[0].index(x) for x in both])
                    r = paired_bootstrap(arm[1].take(ia), ref[1].take(ib), arms.k, metric,
                                         seed_draws=seed_draws(arms.n_boot, len(both), arms.seed))
                    row.update(delta=r.delta, ci_low=r.ci_low, ci_high=r.ci_high, p_boot=r.p_boot,
                               se=r.se, sd_seed=r.sd_seed, var_rows=r.var_rows, n_pairs=len(both))
        out.append(row)
    res = pd.DataFrame(out)
    if res.empty:
        return pd.DataFrame(columns=[*SUMMARY_COLUMNS, "n_pairs"])
    res["p_holm"] = np.nan
    for _, idx in res.groupby("fraction").groups.items():
        res.loc[idx, "p_holm"] = holm(res.loc[idx, "p_boot"].to_numpy(float))
    res["significant"] = res["p_holm"] < ALPHA
    return res[[*SUMMARY_COLUMNS, "n_pairs"]]


def summary_table(df: pd.DataFrame, preds: dict[str, pd.DataFrame], num_labels: int, *,
                  n_boot: int | None = None, seed: int = 0) -> pd.DataFrame:
    """:func:`summarize` for every metric, resamples shared: the rows of ``summary.csv``."""
    from dataselect.stats import N_BOOT

    ok = df[df["status"] == STATUS_OK]
    arms = _Arms(ok, preds, num_labels, n_boot or N_BOOT, seed)
    return pd.concat([summarize(df, m, _arms=arms) for m in METRICS], ignore_index=True)


def power_lines(summary: pd.DataFrame, metric: str = "accuracy", effect: float = 0.01) -> list[str]:
    """Per fraction: the smallest delta this design detects, and seeds for a ``effect`` gain.

    Uses the median seed spread and eval-row variance over the fraction's
    comparisons, α = 0.05 / m (the first step of Holm over m selectors), 80 % power.
    """
    from dataselect.stats import min_detectable_effect, seeds_needed

    s = summary[(summary["metric"] == metric) & np.isfinite(summary["var_rows"].astype(float))]
    lines = []
    for frac, g in s.groupby("fraction", sort=True):
        m = len(g)
        n = int(g["n_pairs"].median())
        sd = float(np.nanmedian(g["sd_seed"])) if g["sd_seed"].notna().any() else 0.0
        vr = float(g["var_rows"].median())
        alpha = ALPHA / m
        mde = min_detectable_effect(sd, vr, n, alpha=alpha)
        need = seeds_needed(effect, sd, vr, alpha=alpha)
        need_s = (f"a {effect * 100:g}-point effect would need {need} seeds" if need is not None else
                  f"no number of seeds reaches a {effect * 100:g}-point effect: the eval set's own "
                  f"noise (±{np.sqrt(vr) * 100:.2f} points per comparison) is too large")
        lines.append(f"- {frac * 100:g} %: with {n} seeds the design detects |Δ {metric}| ≥ "
                     f"{mde * 100:.2f} points (80 % power, α = 0.05/{m}, median seed sd "
                     f"{sd * 100:.2f}, eval-row sd {np.sqrt(vr) * 100:.2f} points); {need_s}.")
    return lines


def _pts(x: float) -> str:
    return f"{x * 100:+.1f}"


def conclusions(summary: pd.DataFrame, budgets: dict[float, int], metric: str = "accuracy") -> list[str]:
    """One sentence per fraction: who beats random after Holm, by how much, or what is ruled out."""
    s = summary[(summary["metric"] == metric) & ~summary["selector"].isin([BASELINE_KEY, FULL_KEY])]
    lines = []
    for frac, g in s.groupby("fraction", sort=True):
        rows = f" ({budgets[frac]:,} rows)" if frac in budgets else ""
        tested = g[np.isfinite(g["p_boot"].astype(float))]
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
            text = (f"- {head}, **no selector beats random** after Holm correction ({len(tested)} "
                    f"comparisons); the best, `{best.selector}`, is {_pts(best.delta)} points "
                    f"[{_pts(best.ci_low)}, {_pts(best.ci_high)}], and no interval reaches above "
                    f"{_pts(tested['ci_high'].max())} points")
        if not lose.empty:
            text += f"; {len(lose)} {'is' if len(lose) == 1 else 'are'} significantly worse than random"
        lines.append(text + ".")
    return lines


def _md(text: Any) -> str:
    """A table cell that holds any name: ``|`` escaped, line breaks as spaces."""
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _fmt(x: float, digits: int = 4) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _fmt_signed(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:+.4f}"


def format_mean_std(mean: float, std: float) -> str:
    """``0.8123 ± 0.0100`` (std ``n/a`` with one seed): the string report.md uses."""
    return f"{_fmt(mean)} ± {_fmt(std)}"


def _p(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def _metric_table(summary: pd.DataFrame, metric: str, marks: dict[str, str] | None = None) -> list[str]:
    marks = marks or {}
    s = summary[summary["metric"] == metric]
    lines = [f"### {metric}", "",
             "| selector | fraction | n seeds | mean ± std | Δ vs random | 95 % CI (bootstrap) | "
             "p (paired t) | p (bootstrap) | p (Holm) | pairs |",
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
            pt, pb, ph = _p(r["p_t"]), _p(r["p_boot"]), _p(r["p_holm"])
        lines.append(f"| {_md(r['selector'])}{marks.get(r['selector'], '')} | {r['fraction']:g} | {r['n_seeds']} | "
                     f"{format_mean_std(r['mean'], r['std'])} | {delta} | {ci} | {pt} | {pb} | {ph} | "
                     f"{r['n_pairs'] or '—'} |")
    for _, r in s[s["selector"] == FULL_KEY].iterrows():
        lines.append(f"| **full (whole pool)** | {r['fraction']:g} | {r['n_seeds']} | "
                     f"{format_mean_std(r['mean'], r['std'])} | reference | — | — | — | — | — |")
    return [*lines, ""]


# --------------------------------------------------------------------------- figures
def _fraction_axis(ax: Any, fractions: list[float]) -> None:
    """Log x axis (fractions span decades) labelled with the grid's own fractions."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_xticks(fractions)
    ax.set_xticklabels([f"{f:g}" for f in fractions])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("fraction of pool")


def _styles(selectors: list[str]) -> dict[str, dict[str, str]]:
    """A distinct (colour, marker) per selector: 20 colours x 6 markers, stable by name order."""
    import matplotlib

    colors = matplotlib.colormaps["tab20"].colors
    markers = "osD^vP"
    return {sel: {"color": colors[i % 20], "marker": markers[(i // 10) % len(markers)]}
            for i, sel in enumerate(selectors)}


def _figures(df: pd.DataFrame, summary: pd.DataFrame, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = df[df["status"] == STATUS_OK]
    if ok.empty:
        return []
    names = []
    selectors = sorted(set(ok["selector"]) - {FULL_KEY})
    style = _styles(selectors)
    ncol = 1 + (len(selectors) - 1) // 24  # legend columns: ~24 entries each
    cols = 2 if len(METRICS) > 2 else len(METRICS)
    rows = -(-len(METRICS) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols + 2.2 * ncol, 4.0 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, METRICS, strict=False):
        s = summary[summary["metric"] == metric]
        for sel, g in s[s["selector"] != FULL_KEY].groupby("selector"):
            g = g.sort_values("fraction")
            ax.errorbar(g["fraction"], g["mean"], yerr=np.nan_to_num(g["std"]), capsize=3,
                        label=sel, ms=5, lw=1.2, **style[sel])
        full = s[s["selector"] == FULL_KEY]
        if not full.empty:
            ax.axhline(full["mean"].iloc[0], color="k", ls="--", lw=1, label="full pool")
        _fraction_axis(ax, sorted(s["fraction"].unique()))
        ax.set_title(metric)
        ax.set_ylabel("mean ± std over seeds")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(METRICS):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, ncol=ncol)
    fig.tight_layout()
    fig.savefig(out / "metrics_vs_fraction.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    names.append("metrics_vs_fraction.png")

    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    agg = ok.groupby(["selector", "fraction"]).agg(sec=("selection_seconds", "mean"),
                                                   acc=("accuracy", "mean")).reset_index()
    for sel, g in agg.groupby("selector"):
        st = style.get(sel, {"color": "k", "marker": "*"})
        ax.scatter(np.maximum(g["sec"], 1e-4), g["acc"], label=sel, color=st["color"],
                   marker=st["marker"], s=28)
        for _, r in g.iterrows():
            ax.annotate(f"{r['fraction']:g}", (max(r["sec"], 1e-4), r["acc"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("selection seconds (mean over seeds)")
    ax.set_ylabel("accuracy (mean over seeds)")
    ax.set_title("selection cost vs accuracy (labels: fraction)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), ncol=ncol)
    fig.tight_layout()
    fig.savefig(out / "cost_vs_accuracy.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    names.append("cost_vs_accuracy.png")
    return names


# --------------------------------------------------------------------------- report
def _model_lines(meta: dict[str, Any]) -> list[str]:
    lines = []
    for role, info in (meta.get("models") or {}).items():
        if not info:
            continue
        note = ""
        if not info.get("is_default"):
            standin = (info.get("offline_short_name") or info.get("standin")
                       or str(info.get("ref", "")).startswith("standin:"))
            kind = "offline stand-in" if standin else "substitute"
            note = f" — **{kind}** for the mission default `{info.get('default')}`; numbers are not the default model's"
        lines.append(f"- {role}: `{info.get('ref')}`{note}")
    return lines


def _overlap_figure(mats: dict[float, pd.DataFrame], out: Path) -> str | None:
    """One Jaccard heatmap per fraction, side by side: ``overlap.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mats = {f: m for f, m in mats.items() if not m.empty}
    if not mats:
        return None
    n = max(len(m) for m in mats.values())
    side = max(4.0, 0.28 * n + 2.0)
    fig, axes = plt.subplots(1, len(mats), figsize=(side * len(mats), side), squeeze=False)
    for ax, (frac, m) in zip(axes.flat, sorted(mats.items()), strict=True):
        im = ax.imshow(m.to_numpy(), vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(m)), m.columns, rotation=90, fontsize=7)
        ax.set_yticks(range(len(m)), m.index, fontsize=7)
        ax.set_title(f"Jaccard overlap of subsets, fraction {frac:g}")
    fig.colorbar(im, ax=list(axes.flat), shrink=0.6)
    fig.savefig(out / "overlap.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "overlap.png"


def _kept_lines(comp: pd.DataFrame, label_names: list[str], noise: dict[str, Any] | None,
                n_pool: int | None, target: dict[str, Any] | None = None,
                marks: dict[str, str] | None = None) -> list[str]:
    if comp.empty:
        return []
    marks = marks or {}
    extra = [c for c in ("mean_perplexity", "mean_pseudo_perplexity") if c in comp]
    noisy = "flipped_kept" in comp
    aimed = "target_auc" in comp
    head = ["selector", "fraction", "rows", *[f"{_md(n)} share" for n in label_names], "mean words",
            *[c.removeprefix("mean_").replace("_", "-") for c in extra],
            *(["target AUC", "eval AUC"] if aimed else [])]
    if noisy:
        head += ["flipped kept", "flipped % of subset", "removal precision", "removal recall"]
    lines = ["## What was kept", "",
             "Subset composition per selector × fraction, averaged over seeds (`kept.csv`)."]
    if target:
        lines += ["", f"The target ({_target_source(target)}) has {target['n_rows']:,} rows of mean "
                  f"{target['mean_words']:.1f} words. *Target AUC*: a logistic regression told subset "
                  "rows from target rows on the pool's embeddings, cross-validated (3 folds); 0.5 means "
                  "the subset is indistinguishable from the target, 1.0 fully apart. *Eval AUC*: the same "
                  "against the eval set, rows no selector saw (unless the target is the eval split). "
                  "Below 0.5 against the target means the subset hugs the very target rows it was chosen "
                  "for (held-out target rows look more like the subset than the rest of the target "
                  "does): fitted to the target sample rather than to its distribution. Every selector is "
                  "measured, target-aware or not."]
    if noisy and noise and n_pool:
        rate = noise["n_flipped"] / n_pool
        lines += ["", f"Label noise: {noise['n_flipped']:,} of {n_pool:,} pool labels flipped "
                  f"({rate:.1%}, {noise['kind']}, seed {noise['seed']}); the eval split is clean. A "
                  f"subset that keeps fewer than {rate:.1%} flipped rows filtered noise; removal "
                  f"precision above {rate:.1%} means the removed rows were richer in flips than chance."]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    # Records, not itertuples: itertuples renames columns that are not identifiers
    # (``share[Sci/Tech]``), so a label name with a slash or a space was a KeyError.
    for d in comp.to_dict("records"):
        cells = [_md(d["selector"]) + marks.get(d["selector"], ""), f"{d['fraction']:g}",
                 f"{d['n_kept']:,.0f}", *[f"{d[share_column(n)]:.3f}" for n in label_names],
                 f"{d['mean_words']:.1f}", *[f"{d[c]:.1f}" for c in extra],
                 *([_fmt(d.get("target_auc", float("nan")), 3), _fmt(d.get("eval_auc", float("nan")), 3)]
                   if aimed else [])]
        if noisy:
            cells += [f"{d['flipped_kept']:,.0f}", f"{d['flipped_share']:.1%}",
                      _fmt(d.get("removal_precision", float("nan")), 3),
                      _fmt(d.get("removal_recall", float("nan")), 3)]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _target_source(target: dict[str, Any]) -> str:
    src = str(target.get("source", "?"))
    if src == "holdout":
        return "whole train sentences held out of the pool, never trained on"
    if target.get("transductive"):
        return f"the eval split's own texts ({src}): **transductive**"
    return src.replace("split:", "the texts of split ").replace("path:", "file ")


def _target_lines(target: dict[str, Any] | None, holdout: dict[str, Any] | None,
                  ok: pd.DataFrame, aware: list[str]) -> list[str]:
    """Setup lines: what the holdout took out, what the target is, which selections read it."""
    lines = []
    if holdout:
        lines.append(
            f"- Holdout: {holdout['eval_sentences'] + holdout['target_sentences']:,} whole train sentences "
            f"held out ({holdout['eval_sentences']:,} to the eval set, {holdout['target_sentences']:,} as "
            f"the target) with every train row that is a phrase of one: {holdout['removed_rows']:,} of "
            f"{holdout['pool_before']:,} train rows left the pool, {holdout['pool_after']:,} remain; no "
            "phrase of a held-out sentence is trained on.")
    if target:
        lines.append(f"- Target: {target['n_rows']:,} rows, {_target_source(target)}; "
                     f"{target.get('n_in_pool', 0):,} of them also in the pool.")
        if aware:
            mark = " (marked † in the tables: transductive)" if target.get("transductive") else ""
            lines.append(f"- Target-aware selectors, which read the target: {', '.join(f'`{a}`' for a in aware)}"
                         f"{mark}.")
            for sel in aware:
                info = _selection_info(ok, sel)
                said = [f"{k} {v}" for k, v in info.items()
                        if k in ("target_labels", "warmup_rows", "target_auc", "effective_sample_size")]
                secs = ok.loc[ok["selector"] == sel, "selection_seconds"].mean()
                if said or np.isfinite(secs):
                    lines.append(f"  - `{sel}`: {'; '.join(said + [f'selection {secs:.1f} s per run (mean)'])}.")
    return lines


def _selection_info(ok: pd.DataFrame, selector: str) -> dict[str, Any]:
    """The first finished trial's selection info of ``selector`` (numbers rounded)."""
    vals = ok.loc[ok["selector"] == selector, "selection_info"].dropna() if "selection_info" in ok else []
    if not len(vals):
        return {}
    info = json.loads(vals.iloc[0])
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in info.items()}


def _load_target_space(study: Path) -> Any:
    """The study's :class:`~dataselect.subsets.TargetSpace` (``inputs/target/``), or None."""
    from dataselect.subsets import TargetSpace

    d = study / "inputs" / "target"
    try:
        rows = pd.read_parquet(d / "target.parquet")
        pool = pd.read_parquet(study / "inputs" / "pool.parquet", columns=["id"])
        evals = np.load(d / "eval_embedding.npy") if (d / "eval_embedding.npy").is_file() else None
        return TargetSpace(pool["id"].to_numpy(np.int64), np.load(d / "pool_embedding.npy"),
                           np.load(d / "target_embedding.npy"), rows["n_words"].to_numpy(), evals)
    except (OSError, ValueError, KeyError):
        return None


def write_report(study_dir: str | Path) -> Path:
    """Write results, ``summary.csv``, ``kept.csv``, ``report.md`` and figures under ``<study_dir>/report``.

    The folder is built beside the old one and swapped in only when complete:
    a report that fails half-way leaves the previous report whole, never a
    new results.csv beside a stale report.md. Returns the path of ``report.md``.
    """
    study = Path(study_dir)
    final = study / "report"
    work = study / f".report-new-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        _write_report(study, work)
        old = study / f".report-old-{os.getpid()}"
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        work.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = final / "report.md"
    log.info("report: %s", path)
    return path


def _write_report(study: Path, out: Path) -> None:
    """Every report file of ``study``, written into the folder ``out``."""
    from dataselect.stats import N_BOOT
    from dataselect.subsets import composition_table, jaccard_matrix, overlap_flags, subsets_at

    meta_path = study / "study.json"
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    label_names = (meta.get("dataset") or {}).get("label_names")
    exp_dir = _experiment_dir(study, meta)
    df = collect_results(exp_dir, label_names)
    df.to_parquet(out / "results.parquet", index=False)
    df.to_csv(out / "results.csv", index=False)

    cfg = meta.get("config") or {}
    trainer = cfg.get("trainer") or {}
    ds = meta.get("dataset") or {}
    n_ok = int((df["status"] == STATUS_OK).sum()) if not df.empty else 0
    n_err = int((df["status"] == "ERROR").sum()) if not df.empty else 0
    ok = df[df["status"] == STATUS_OK] if not df.empty else df
    trials = ok["trial"].tolist() if n_ok else []
    preds = load_trial_frames(study, trials, "predictions.parquet")
    kept = load_trial_frames(study, trials, "kept.parquet")
    names = label_names or [str(i) for i in range(2)]
    summary = summary_table(df, preds, max(len(names), 2)) if n_ok else pd.DataFrame(columns=SUMMARY_COLUMNS)
    summary.to_csv(out / "summary.csv", index=False)
    figs = _figures(df, summary, out) if n_ok else []

    noise = meta.get("label_noise")
    n_pool = ds.get("n_pool")
    comp = composition_table(ok, kept, names, n_pool=n_pool,
                             n_flipped_pool=noise.get("n_flipped") if noise else None,
                             target=_load_target_space(study) if meta.get("target") else None
                             ) if kept else pd.DataFrame()
    comp.to_csv(out / "kept.csv", index=False)
    mats, flags, overlap_seed = {}, [], {}
    for frac in sorted(set(ok["fraction"])) if n_ok else []:
        if frac == 1.0:
            continue
        subs, sd = subsets_at(ok, kept, frac)
        mats[frac] = jaccard_matrix(subs)
        overlap_seed[frac] = sd
        flags += [(frac, a, b, j) for a, b, j in overlap_flags(mats[frac])]
    if mats:
        pd.concat({f"{f:g}": m for f, m in mats.items() if not m.empty}, names=["fraction", "selector"]
                  ).to_csv(out / "overlap.csv")
    ov_fig = _overlap_figure(mats, out) if mats else None

    seeds = (cfg.get("grid") or {}).get("seeds")
    # A selection that read the eval split's own texts is transductive: marked in every table.
    reads = (ok["reads_target"].fillna(False).astype(bool) if n_ok and "reads_target" in ok
             else pd.Series(False, index=ok.index))
    aware = sorted(set(ok.loc[reads, "selector"]))
    marks = {sel: " †" for sel in aware} if (meta.get("target") or {}).get("transductive") else {}
    mode = trainer.get("mode", "?")
    feats = meta.get("probe_features") or trainer.get("probe_features") or "embedding"
    how = (f"fine-tuned `{trainer.get('model')}`" if mode == "finetune"
           else f"`{trainer.get('probe')}` probe (C={trainer.get('probe_c')}) on frozen "
                f"`{(cfg.get('features') or {}).get('encoder')}` embeddings (`{feats}`"
                f"{', L2-normalised' if feats == 'embedding_norm' else ', raw mean-pooled'})")
    budgets = {float(f): int(b) for f, b in ok.groupby("fraction")["budget"].first().items()
               if pd.notna(b)} if n_ok else {}
    lines = [f"# Study `{meta.get('name', study.name)}`", ""]
    if n_ok:
        lines += ["**Conclusion.**", "", *conclusions(summary, budgets), ""]
    noise_line = (f"- Label noise: {noise['n_flipped']:,} pool labels flipped ({noise['kind']}, rate "
                  f"{noise['rate']:g}, seed {noise['seed']}) before features and selection; the eval "
                  "split is untouched." if noise else None)
    lines += [
        "## Setup", "",
        f"- Trainer: {how}.",
        f"- Pool: {ds.get('n_pool', '?')} training rows from `{ds.get('source', '?')}`; "
        f"eval: {ds.get('n_eval', '?')} rows; classes {ds.get('label_names', '?')}.",
        *([noise_line] if noise_line else []),
        *_target_lines(meta.get("target"), meta.get("holdout"), ok, aware),
        f"- Seeds: {len(seeds) if seeds else '?'} ({seeds}); fractions {(cfg.get('grid') or {}).get('fractions')}.",
        f"- Trials: {len(df)} found of {meta.get('n_trials', '?')} expected; "
        f"{n_ok} finished, {n_err} failed, {len(df) - n_ok - n_err} incomplete; "
        f"{len(preds)} with per-row predictions.",
        *_model_lines(meta),
        "",
        "## Statistics", "",
        "Mean ± sample std (ddof=1) over seeds. Δ = mean over seed-matched pairs of (selector − "
        "`random` at the same fraction) on the whole eval set. The 95 % interval and p (bootstrap) "
        f"come from a paired bootstrap with {N_BOOT:,} resamples that draws seeds *and* eval rows "
        "with replacement, scoring both arms on the same resampled rows (Efron & Tibshirani 1993; "
        "Dror et al., ACL 2018); p is two-sided, from the bootstrap distribution shifted to the null. "
        "p (paired t) is the seed-paired t-test alone, which ignores eval-set noise. p (Holm) "
        "adjusts the bootstrap p over all selectors of one metric and fraction (Holm 1979); "
        "**bold** Δ = Holm-adjusted p < 0.05. Seed-free selectors give the same subset for every "
        "seed, so their spread is the trainer's alone.",
        "",
        "Power (accuracy):",
        "",
        *(power_lines(summary) or ["- n/a (no bootstrap comparisons)"]),
        "",
        "## Results",
        "",
    ]
    if n_ok:
        for metric in METRICS:
            lines += _metric_table(summary, metric, marks)
        lines += _kept_lines(comp, names, noise, n_pool, meta.get("target"), marks)
        if mats:
            seeds_used = set(overlap_seed.values())
            which = (f"seed {seeds_used.pop()}" if len(seeds_used) == 1 else "seed " + ", ".join(
                f"{s} at {f * 100:g} %" for f, s in overlap_seed.items()))
            lines += ["### Overlap between selectors' subsets", "",
                      f"Jaccard |A ∩ B| / |A ∪ B| of the row sets at each fraction ({which}); all pairs "
                      "in `overlap.csv`."]
            if flags:
                lines += ["", "Pairs whose subsets are identical or overlap > 90 %:", "",
                          "| fraction | selector A | selector B | Jaccard |", "|---|---|---|---|"]
                lines += [f"| {f:g} | {a} | {b} | {j:.3f}{' (identical)' if j == 1.0 else ''} |"
                          for f, a, b, j in flags]
            else:
                lines += ["", "No two selectors' subsets overlap by more than 90 %."]
            lines += ["", f"![{ov_fig}]({ov_fig})" if ov_fig else "", ""]
        lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figs] + [""]
        skew = ok[ok["missing_classes"].fillna("[]") != "[]"]
        if not skew.empty:
            lines += ["## Subsets missing a class", "",
                      "| trial | n_train | missing classes |", "|---|---|---|"]
            lines += [f"| {_md(r['trial'])} | {r['n_train']} | {_md(r['missing_classes'])} |"
                      for r in skew.to_dict("records")]
            lines.append("")
    else:
        lines += ["No finished trials.", ""]
    if n_err or len(df) > n_ok:
        lines += ["## Failed or incomplete trials", "", "| trial | status | error |", "|---|---|---|"]
        for r in df[df["status"] != STATUS_OK].to_dict("records"):
            lines.append(f"| {_md(r['trial'])} | {r['status']} | {_md(r['error'] or '')} |")
        lines.append("")
    lines += ["Files: `results.csv` (one row per trial), `summary.csv` (every comparison), `kept.csv`, "
              "`overlap.csv`. TensorBoard: "
              f"`tensorboard --logdir {study / 'tensorboard'}`.", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    log.info("report: %d trials, %d ok, %d failed", len(df), n_ok, n_err)
