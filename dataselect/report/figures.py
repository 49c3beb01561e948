"""The report's figures (matplotlib, Agg), each answering one question at a glance.

* ``forest.png``, first: per fraction, every selector's Δ vs random on the
  primary metric with its paired 95 % interval (seeds and eval rows), sorted by Δ;
  Holm-significant ones filled; the zero line; the minimum detectable effect
  shaded around it.
* ``efficiency.png``: the primary metric vs the fraction of the pool (log
  x), random's 95 % interval over seeds as a band, the whole pool as a line.
* ``overlap.png``: Jaccard overlap of the subsets, one heatmap per fraction.
* ``cost.png``: each selector's selection seconds against its Δ vs random.

A selector far from the rest (a collapsed one) is drawn at the axis edge
with its value written beside it, so it does not squeeze the others into a
band: the axis spans the bulk of the values (:func:`robust_limits`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dataselect.report.results import BASELINE_KEY, FULL_KEY, STATUS_OK

__all__ = ["draw_figures", "overlap_figure", "robust_limits", "save_figure", "selector_styles"]

MIN_LIM_SPAN = 0.02
"""The smallest axis span of a metric in [0, 1] (2 points), so equal values still show apart."""


def _pyplot() -> Any:
    """pyplot on the file-only Agg backend (reports are written on headless machines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def selector_styles(selectors: list[str]) -> dict[str, dict[str, str]]:
    """A distinct (colour, marker) per selector: 20 colours x 6 markers, stable by name order."""
    import matplotlib

    colors = matplotlib.colormaps["tab20"].colors
    markers = "osD^vP"
    return {sel: {"color": colors[i % 20], "marker": markers[(i // 10) % len(markers)]}
            for i, sel in enumerate(selectors)}


def robust_limits(values: np.ndarray, *, pad: float = 0.15, min_span: float = MIN_LIM_SPAN) -> tuple[float, float]:
    """Axis limits that hold the bulk of ``values``, leaving far outliers outside.

    The bulk is within median ± 4 robust sd (1.4826 × the median absolute
    deviation, at least ``min_span``) of the median; the limits span its
    extreme values (at least ``min_span``, in the values' unit), padded.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return -1.0, 1.0
    med = float(np.median(v))
    spread = max(4 * 1.4826 * float(np.median(np.abs(v - med))), min_span)
    inside = v[np.abs(v - med) <= spread]
    lo, hi = float(inside.min()), float(inside.max())
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    return lo - pad * (hi - lo), hi + pad * (hi - lo)


def _clip_marks(ax: Any, xs: np.ndarray, ys: np.ndarray, lims: tuple[float, float], *, axis: str,
                fmt: str = "{:+.1f}") -> None:
    """Points beyond ``lims`` drawn at the edge (an open triangle) with their value written."""
    lo, hi = lims
    for x, y in zip(xs, ys, strict=True):
        v = x if axis == "x" else y
        if not np.isfinite(v) or lo <= v <= hi:
            continue
        edge = lo if v < lo else hi
        marker = ("<" if v < lo else ">") if axis == "x" else ("v" if v < lo else "^")
        pos = (edge, y) if axis == "x" else (x, edge)
        ax.plot(*pos, marker=marker, color="0.3", ms=7, clip_on=False, zorder=5)
        ax.annotate(fmt.format(v), pos, xytext=(4, -3) if axis == "x" else (4, 4),
                    textcoords="offset points", fontsize=7, color="0.3")


def forest_figure(summary: pd.DataFrame, metric: str, mde: dict[float, float]) -> Any:
    """``forest.png``: Δ vs random with 95 % intervals per fraction (see the module docstring)."""
    plt = _pyplot()

    s = summary[(summary["metric"] == metric) & ~summary["selector"].isin([BASELINE_KEY, FULL_KEY])]
    s = s[np.isfinite(s["delta"].astype(float))]
    if s.empty:
        return None
    fracs = sorted(s["fraction"].unique())
    n_rows = max(len(g) for _, g in s.groupby("fraction"))
    lims = robust_limits(np.r_[s["ci_low"], s["ci_high"], s["delta"], 0.0].astype(float) * 100, min_span=2.0)
    fig, axes = plt.subplots(1, len(fracs), figsize=(4.6 * len(fracs) + 1.2, 0.34 * n_rows + 1.6),
                             squeeze=False, sharex=True)
    for ax, frac in zip(axes.flat, fracs, strict=True):
        g = s[s["fraction"] == frac].sort_values("delta")
        y = np.arange(len(g))
        d, lo, hi = (g[c].to_numpy(float) * 100 for c in ("delta", "ci_low", "ci_high"))
        if frac in mde and np.isfinite(mde[frac]):
            m = mde[frac] * 100
            ax.axvspan(-m, m, color="0.92", zorder=0, label=f"|Δ| < MDE ({m:.1f})")
        ax.axvline(0, color="0.4", lw=1)
        sig = g["significant"].fillna(False).to_numpy(bool)
        ax.hlines(y, np.clip(lo, *lims), np.clip(hi, *lims), color="C0", lw=1.6)
        ax.plot(np.clip(d[sig], *lims), y[sig], "o", color="C3", ms=6, label="Holm p < 0.05")
        ax.plot(np.clip(d[~sig], *lims), y[~sig], "o", mfc="white", color="C0", ms=6, label="not significant")
        _clip_marks(ax, d, y, lims, axis="x")
        ax.set_yticks(y, g["selector"], fontsize=8)
        ax.set_xlim(*lims)
        ax.set_title(f"{frac * 100:g} % of the pool", fontsize=10)
        ax.set_xlabel(f"Δ {metric} vs random (points, 95 % CI)")
        ax.grid(axis="x", alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def efficiency_figure(ok: pd.DataFrame, metric: str) -> Any:
    """``efficiency.png``: the metric vs fraction, random's band, the whole pool as a line."""
    plt = _pyplot()
    from matplotlib.ticker import NullFormatter
    from scipy import stats

    sub = ok[ok["selector"] != FULL_KEY]
    if sub.empty:
        return None
    agg = sub.groupby(["selector", "fraction"])[metric].agg(["mean", "std", "count"]).reset_index()
    full = ok.loc[ok["selector"] == FULL_KEY, metric]
    lims = robust_limits(agg["mean"].to_numpy(float), pad=0.25)
    if len(full):  # the whole-pool line is the reference: always in view
        room = 0.05 * (lims[1] - lims[0])
        lims = (min(lims[0], float(full.mean()) - room), max(lims[1], float(full.mean()) + room))
    fracs = sorted(agg["fraction"].unique())
    selectors = sorted(set(agg["selector"]) - {BASELINE_KEY})
    style = selector_styles(selectors)
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    base = agg[agg["selector"] == BASELINE_KEY].sort_values("fraction")
    if not base.empty:
        half = [stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n) if n > 1 else 0.0
                for sd, n in zip(base["std"], base["count"], strict=True)]
        ax.fill_between(base["fraction"], base["mean"] - half, base["mean"] + half, color="0.8",
                        label="random, 95 % CI of the mean")
        ax.plot(base["fraction"], base["mean"], color="0.3", lw=1.5, label="random")
    for sel in selectors:
        g = agg[agg["selector"] == sel].sort_values("fraction")
        ax.plot(g["fraction"], np.clip(g["mean"], *lims), lw=1, ms=5, label=sel, **style[sel])
        _clip_marks(ax, g["fraction"].to_numpy(float), g["mean"].to_numpy(float), lims, axis="y",
                    fmt="{:.3f}")
    if len(full):
        ax.axhline(float(full.mean()), color="k", ls="--", lw=1, label=f"whole pool ({full.mean():.3f})")
    ax.set_xscale("log")
    ax.set_xticks(fracs, [f"{f * 100:g} %" for f in fracs])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("fraction of the pool (log scale)")
    ax.set_ylabel(f"{metric} (mean over seeds)")
    ax.set_ylim(*lims)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), ncol=1 + len(selectors) // 24)
    fig.tight_layout()
    return fig


def cost_figure(ok: pd.DataFrame, summary: pd.DataFrame, metric: str,
                cost: pd.DataFrame | None = None) -> Any:
    """``cost.png``: seconds (features + selection where ``cost`` has them, else selection
    alone) against Δ vs random, one marker shape per fraction."""
    plt = _pyplot()

    s = summary[(summary["metric"] == metric) & ~summary["selector"].isin([BASELINE_KEY, FULL_KEY])]
    secs = ok.groupby(["selector", "fraction"])["selection_seconds"].mean()
    what = "selection seconds"
    if cost is not None and len(cost) and np.isfinite(cost["cost_seconds"].astype(float)).all():
        secs, what = cost.set_index(["selector", "fraction"])["cost_seconds"], "seconds added (features + selection)"
    s = s.assign(sec=[secs.get((a, b), np.nan) for a, b in zip(s["selector"], s["fraction"], strict=True)])
    s = s[np.isfinite(s["delta"].astype(float))]
    if s.empty:
        return None
    selectors = sorted(s["selector"].unique())
    style = selector_styles(selectors)
    shapes = dict(zip(sorted(s["fraction"].unique()), "osD^vP*X", strict=False))
    lims = robust_limits(np.r_[s["delta"], 0.0].astype(float) * 100, min_span=2.0)
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    for r in s.itertuples():
        ax.scatter(max(r.sec, 1e-3), np.clip(r.delta * 100, *lims), color=style[r.selector]["color"],
                   marker=shapes[r.fraction], s=36, edgecolor="k", linewidth=0.3)
    _clip_marks(ax, np.maximum(s["sec"].to_numpy(float), 1e-3), s["delta"].to_numpy(float) * 100, lims,
                axis="y")
    ax.axhline(0, color="0.4", lw=1)
    ax.set_xscale("log")
    ax.set_ylim(*lims)
    ax.set_xlabel(f"{what}, mean over seeds (log scale)")
    ax.set_ylabel(f"Δ {metric} vs random (points)")
    ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", color=style[sel]["color"], label=sel) for sel in selectors]
    handles += [Line2D([], [], ls="", marker=m, color="0.3", label=f"{f * 100:g} %") for f, m in shapes.items()]
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def save_figure(fig: Any, path: Path, dpi: int = 110) -> str:
    """Write ``fig`` as PNG (whole labels kept: ``bbox_inches="tight"``), close it, return the name."""
    plt = _pyplot()

    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path.name


def draw_figures(df: pd.DataFrame, summary: pd.DataFrame, out: Path, metric: str,
                 mde: dict[float, float], cost: pd.DataFrame | None = None) -> list[str]:
    """The forest, efficiency and cost figures of a report (names of the files written)."""
    ok = df[df["status"] == STATUS_OK]
    if ok.empty:
        return []
    figs = {"forest.png": forest_figure(summary, metric, mde), "efficiency.png": efficiency_figure(ok, metric),
            "cost.png": cost_figure(ok, summary, metric, cost)}
    return [save_figure(fig, out / name) for name, fig in figs.items() if fig is not None]


def overlap_figure(mats: dict[float, pd.DataFrame]) -> Any:
    """One Jaccard heatmap per fraction, stacked: ``overlap.png``; values written when it is small."""
    plt = _pyplot()

    mats = {f: m for f, m in mats.items() if not m.empty}
    if not mats:
        return None
    n = max(len(m) for m in mats.values())
    side = max(4.5, 0.42 * n + 2.5)
    fig, axes = plt.subplots(len(mats), 1, figsize=(side + 1.0, side * len(mats)), squeeze=False)
    for ax, (frac, m) in zip(axes.flat, sorted(mats.items()), strict=True):
        im = ax.imshow(m.to_numpy(), vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(m)), m.columns, rotation=90, fontsize=8)
        ax.set_yticks(range(len(m)), m.index, fontsize=8)
        ax.set_title(f"Jaccard overlap of the subsets at {frac * 100:g} % of the pool", fontsize=10, pad=8)
        if len(m) <= 16:
            for i in range(len(m)):
                for j in range(len(m)):
                    v = float(m.iat[i, j])
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if v < 0.6 else "black")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig
