"""Study report from the Tune experiment on disk: results table, report.md, figures.

Everything is read back from files (each trial's ``params.json``,
``result.json`` and ``error.txt`` in ``<study_dir>/tune/<name>/``, plus the
sweep's ``study.json``), never from a live sweep, so ``dataselect report``
can rebuild it any time, also after a crash or on another machine.

Statistics: mean ± sample std (ddof=1) over seeds; "delta vs random" is the
mean of seed-matched differences (same fraction, same seed) with a two-sided
paired t-test (``scipy.stats.ttest_rel``); fewer than two pairs → "n/a". No
correction for multiple comparisons is applied; with 3 seeds the test has
little power, which the report says.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dataselect.metrics import METRICS

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


def collect_results(exp_dir: str | Path, label_names: list[str] | None = None) -> pd.DataFrame:
    """One row per trial folder of a Tune experiment.

    ``status`` is ``TERMINATED`` (metrics reported), ``ERROR`` (error.txt,
    no metrics) or ``INCOMPLETE`` (started, nothing reported yet).
    """
    rows = []
    for tdir in sorted(p for p in Path(exp_dir).iterdir() if (p / "params.json").is_file()):
        params = json.loads((tdir / "params.json").read_text())
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
            row[f"n_{lab}"] = counts[i] if i < len(counts) else None
        row["missing_classes"] = json.dumps([names[i] if i < len(names) else i
                                             for i in res.get("missing_classes", [])]) if ok else None
        for m in METRICS:
            row[m] = res.get(m)
        for k in ("train_loss", "selection_seconds", "train_seconds", "eval_seconds", "mode", "model",
                  "node_id"):
            row[k] = res.get(k)
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for c in (*METRICS, "fraction", "selection_seconds", "train_seconds", "eval_seconds", "train_loss"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df.sort_values(["selector", "fraction", "seed"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- stats
def summarize(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean ± std over seeds per selector × fraction, delta vs random, paired t-test."""
    from scipy.stats import ttest_rel

    ok = df[df["status"] == STATUS_OK]
    out = []
    base = ok[ok["selector"] == BASELINE_KEY]
    for (sel, frac), g in ok.groupby(["selector", "fraction"], sort=True):
        vals = g[metric].to_numpy(float)
        row: dict[str, Any] = {"selector": sel, "fraction": frac, "n": len(vals),
                               "mean": float(vals.mean()),
                               "std": float(vals.std(ddof=1)) if len(vals) > 1 else float("nan"),
                               "delta": float("nan"), "p": float("nan"), "n_pairs": 0}
        if sel not in (BASELINE_KEY, FULL_KEY):
            b = base[base["fraction"] == frac].set_index("seed")[metric]
            s = g.set_index("seed")[metric]
            common = sorted(set(s.index) & set(b.index))
            row["n_pairs"] = len(common)
            if common:
                diff = s.loc[common].to_numpy(float) - b.loc[common].to_numpy(float)
                row["delta"] = float(diff.mean())
                if len(common) >= 2 and np.ptp(diff) > 0:
                    row["p"] = float(ttest_rel(s.loc[common], b.loc[common]).pvalue)
        out.append(row)
    return pd.DataFrame(out)


def _fmt(x: float, digits: int = 4) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _fmt_signed(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:+.4f}"


def format_mean_std(mean: float, std: float) -> str:
    """``0.8123 ± 0.0100`` (std ``n/a`` with one seed): the string report.md uses."""
    return f"{_fmt(mean)} ± {_fmt(std)}"


def _metric_table(df: pd.DataFrame, metric: str) -> list[str]:
    s = summarize(df, metric)
    lines = [f"### {metric}", "",
             "| selector | fraction | n seeds | mean ± std | Δ vs random | p (paired t) | pairs |",
             "|---|---|---|---|---|---|---|"]
    for _, r in s[s["selector"] != FULL_KEY].iterrows():
        if r["selector"] == BASELINE_KEY:
            delta, p = "(baseline)", "—"
        else:
            delta = _fmt_signed(r["delta"]) if r["n_pairs"] else "n/a"
            p = _fmt(r["p"], 3) if r["n_pairs"] >= 2 and np.isfinite(r["p"]) else "n/a"
        lines.append(f"| {r['selector']} | {r['fraction']:g} | {r['n']} | "
                     f"{format_mean_std(r['mean'], r['std'])} | {delta} | {p} | {r['n_pairs'] or '—'} |")
    full = s[s["selector"] == FULL_KEY]
    for _, r in full.iterrows():
        lines.append(f"| **full (whole pool)** | {r['fraction']:g} | {r['n']} | "
                     f"{format_mean_std(r['mean'], r['std'])} | reference | — | — |")
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


def _figures(df: pd.DataFrame, out: Path) -> list[str]:
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
        s = summarize(df, metric)
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


def write_report(study_dir: str | Path) -> Path:
    """Write ``results.parquet``, ``results.csv``, ``report.md`` and figures under ``<study_dir>/report``.

    Returns the path of ``report.md``.
    """
    study = Path(study_dir)
    meta_path = study / "study.json"
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    label_names = (meta.get("dataset") or {}).get("label_names")
    exp_dir = _experiment_dir(study, meta)
    df = collect_results(exp_dir, label_names)
    out = study / "report"
    out.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out / "results.parquet", index=False)
    df.to_csv(out / "results.csv", index=False)
    figs = _figures(df, out) if not df.empty else []

    cfg = meta.get("config") or {}
    trainer = cfg.get("trainer") or {}
    ds = meta.get("dataset") or {}
    n_ok = int((df["status"] == STATUS_OK).sum()) if not df.empty else 0
    n_err = int((df["status"] == "ERROR").sum()) if not df.empty else 0
    expected = meta.get("n_trials")
    seeds = (cfg.get("grid") or {}).get("seeds")
    mode = trainer.get("mode", "?")
    how = (f"fine-tuned `{trainer.get('model')}`" if mode == "finetune"
           else f"`{trainer.get('probe')}` probe (C={trainer.get('probe_c')}) on frozen "
                f"`{(cfg.get('features') or {}).get('encoder')}` embeddings")
    lines = [
        f"# Study `{meta.get('name', study.name)}`",
        "",
        f"- Trainer: {how}.",
        f"- Pool: {ds.get('n_pool', '?')} training rows from `{ds.get('source', '?')}`; "
        f"eval: {ds.get('n_eval', '?')} rows; classes {ds.get('label_names', '?')}.",
        f"- Seeds: {len(seeds) if seeds else '?'} ({seeds}); fractions {(cfg.get('grid') or {}).get('fractions')}.",
        f"- Trials: {len(df)} found of {expected if expected is not None else '?'} expected; "
        f"{n_ok} finished, {n_err} failed, {len(df) - n_ok - n_err} incomplete.",
        *_model_lines(meta),
        "",
        "Statistics: mean ± sample std (ddof=1) over seeds. Δ vs random = mean of seed-matched "
        "differences with the `random` selector at the same fraction; p = two-sided paired t-test "
        "(`scipy.stats.ttest_rel`) over those pairs, `n/a` with fewer than 2 pairs (or identical "
        "differences). No multiple-comparison correction; with few seeds the test has little power.",
        "",
        "## Results",
        "",
    ]
    if n_ok:
        for metric in METRICS:
            lines += _metric_table(df, metric)
        lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figs] + [""]
        ok = df[df["status"] == STATUS_OK]
        skew = ok[ok["missing_classes"].fillna("[]") != "[]"]
        if not skew.empty:
            lines += ["## Subsets missing a class", "",
                      "| trial | n_train | missing classes |", "|---|---|---|"]
            lines += [f"| {r.trial} | {r.n_train} | {r.missing_classes} |" for r in skew.itertuples()]
            lines.append("")
    else:
        lines += ["No finished trials.", ""]
    if n_err or len(df) > n_ok:
        lines += ["## Failed or incomplete trials", "", "| trial | status | error |", "|---|---|---|"]
        for r in df[df["status"] != STATUS_OK].itertuples():
            err = (r.error or "").replace("|", "\\|")
            lines.append(f"| {r.trial} | {r.status} | {err} |")
        lines.append("")
    lines += ["Per-trial rows: `results.csv` / `results.parquet`. TensorBoard: "
              f"`tensorboard --logdir {study / 'tensorboard'}`.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    log.info("report: %s (%d trials, %d ok, %d failed)", path, len(df), n_ok, n_err)
    return path
