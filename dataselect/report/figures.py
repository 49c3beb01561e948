"""The report's figures (matplotlib, Agg), each answering one question at a glance.

* ``forest.png``, first: per fraction, every selector's Δ vs random on the
  primary metric with its paired 95 % interval (seeds and eval rows), sorted by Δ;
  Holm-significant ones filled; the zero line; the minimum detectable effect
  shaded around it.
* ``efficiency.png``: the primary metric vs the fraction of the pool (log
  x), random's 95 % interval over seeds as a band, the whole pool as a line.
* ``overlap.png``: Jaccard overlap of the subsets, one heatmap per fraction.
* ``cost.png``: each selector's selection seconds against its Δ vs random.

At 27 arms 27 colours cannot be told apart: the efficiency and cost figures
name only random, every Holm-significant selector and the best few by Δ
(:func:`highlighted`), each in its own colour and marker, and draw the rest
in grey under one legend entry. A selector far from the rest (a collapsed
one) is drawn at the axis edge with its value written beside it, so it does
not squeeze the others into a band: the axis spans the bulk of the values
(:func:`robust_limits`); those labels are placed so that none covers another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dataselect.report.results import BASELINE_KEY, FULL_KEY, STATUS_OK

__all__ = ["draw_figures", "highlighted", "overlap_figure", "robust_limits", "save_figure", "selector_styles"]

MIN_LIM_SPAN = 0.02
"""The smallest axis span of a metric in [0, 1] (2 points), so equal values still show apart."""


def _pyplot() -> Any:
    """pyplot on the file-only Agg backend (reports are written on headless machines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def selector_styles(selectors: list[str]) -> dict[str, dict[str, Any]]:
    """A distinct (colour, marker) per named selector, in the order given: tab10 without its grey
    (kept for the unnamed ones), and the marker turning with the colour, so no two share both."""
    import matplotlib

    colors = [c for k, c in enumerate(matplotlib.colormaps["tab10"].colors) if k != 7]
    markers = "osD^vP*X"
    return {sel: {"color": colors[i % len(colors)], "marker": markers[i % len(markers)]}
            for i, sel in enumerate(selectors)}


BEST = 3
"""Selectors named in colour per fraction besides random and the significant ones: the largest Δ."""
OTHER = "0.72"
"""The grey of the selectors a figure does not name."""


def highlighted(summary: pd.DataFrame, metric: str, best: int = BEST) -> list[str]:
    """The selectors the efficiency and cost figures name: every one Holm-significant at some
    fraction (better or worse), and the ``best`` largest Δ at each fraction; by largest Δ."""
    s = summary[(summary["metric"] == metric) & ~summary["selector"].isin([BASELINE_KEY, FULL_KEY])]
    s = s[np.isfinite(s["delta"].astype(float))]
    if s.empty:
        return []
    chosen = set(s.loc[s["significant"].fillna(False).astype(bool), "selector"])
    for _, g in s.groupby("fraction"):
        chosen |= set(g.sort_values(["delta", "selector"], ascending=[False, True]).head(best)["selector"])
    top = s.groupby("selector")["delta"].max().sort_values(ascending=False, kind="stable")
    return [sel for sel in top.index if sel in chosen]


def _significant_at(summary: pd.DataFrame, metric: str, selector: str) -> list[float]:
    s = summary[(summary["metric"] == metric) & (summary["selector"] == selector)]
    return sorted(s.loc[s["significant"].fillna(False).astype(bool), "fraction"])


def _label(summary: pd.DataFrame | None, metric: str, selector: str) -> str:
    """``name`` or ``name (Holm p < 0.05 at 5 %)``."""
    at = _significant_at(summary, metric, selector) if summary is not None else []
    return f"{selector} (Holm p < 0.05 at {', '.join(f'{f * 100:g} %' for f in at)})" if at else selector


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
                fmt: str = "{:+.1f}", names: list[str] | None = None,
                colors: list[Any] | None = None) -> list[Any]:
    """Points beyond ``lims`` drawn at the edge (a triangle) with their value (and name) written.

    Labels are placed one by one, each moved a row further into the axes
    until it covers no label placed before it (several collapsed selectors
    at one fraction, or at nearby costs, land on the same spot). Call after
    the figure's layout is final. Returns the labels.
    """
    lo, hi = lims
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    placed: list[Any] = []
    texts = []
    along = np.asarray(xs if axis == "y" else ys, float)
    vals = np.asarray(xs if axis == "x" else ys, float)
    beyond = np.where(vals < lo, lo - vals, vals - hi)
    # Along the edge in order; at one spot the farthest value nearest the edge, the rest stepping inward.
    order = np.lexsort((-np.nan_to_num(beyond), along))
    for i in order:
        x, y = xs[i], ys[i]
        v = x if axis == "x" else y
        if not np.isfinite(v) or lo <= v <= hi:
            continue
        edge = lo if v < lo else hi
        marker = ("<" if v < lo else ">") if axis == "x" else ("v" if v < lo else "^")
        pos = (edge, y) if axis == "x" else (x, edge)
        color = colors[i] if colors is not None else "0.3"
        ax.plot(*pos, marker=marker, color=color, ms=7, clip_on=False, zorder=5)
        text = fmt.format(v) if names is None else f"{names[i]} {fmt.format(v)}"
        inward = 1 if v < lo else -1  # rows step into the axes, away from the edge
        for row in range(40):
            off = (4, -3) if axis == "x" else (4, inward * (4 + 9 * row) - (7 if inward < 0 else 0))
            t = ax.annotate(text, pos, xytext=off, textcoords="offset points", fontsize=7, color=color,
                            zorder=6, bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none",
                                            "alpha": 0.85})  # lines drawn to the edge pass under it
            box = t.get_window_extent(renderer)
            if axis == "x" or not any(box.overlaps(b) for b in placed):
                break
            t.remove()
        placed.append(box)
        texts.append(t)
    return texts


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
    clipped = []
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
        clipped.append((ax, d, y))
        ax.set_yticks(y, g["selector"], fontsize=8)
        ax.set_xlim(*lims)
        mde_note = f"; MDE {mde[frac] * 100:.1f}" if frac in mde and np.isfinite(mde[frac]) else ""
        ax.set_title(f"{frac * 100:g} % of the pool{mde_note}", fontsize=10)
        ax.set_xlabel(f"Δ {metric} vs random (points, 95 % CI)")
        ax.grid(axis="x", alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    panel_mde = [f"{mde[f] * 100:.1f} at {f * 100:g} %" for f in fracs if f in mde and np.isfinite(mde[f])]
    # Each panel's band is its own fraction's MDE: the legend says every one, not the first panel's.
    labels = [f"|Δ| < MDE ({', '.join(panel_mde)})" if lb.startswith("|Δ| < MDE") else lb for lb in labels]
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    for ax, d, y in clipped:
        _clip_marks(ax, d, y, lims, axis="x")
    return fig


def efficiency_figure(ok: pd.DataFrame, metric: str, summary: pd.DataFrame | None = None) -> Any:
    """``efficiency.png``: the metric vs fraction, random's band, the whole pool as a line; the
    :func:`highlighted` selectors of ``summary`` in colour, the rest grey (all named without it)."""
    plt = _pyplot()
    from matplotlib.lines import Line2D
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
    named = ([s for s in highlighted(summary, metric) if s in selectors] if summary is not None
             else selectors)
    style = selector_styles(named)
    rest = [s for s in selectors if s not in style]
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    base = agg[agg["selector"] == BASELINE_KEY].sort_values("fraction")
    if not base.empty:
        half = [stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n) if n > 1 else 0.0
                for sd, n in zip(base["std"], base["count"], strict=True)]
        ax.fill_between(base["fraction"], base["mean"] - half, base["mean"] + half, color="0.85",
                        label="random, 95 % CI of the mean", zorder=1)
        ax.plot(base["fraction"], base["mean"], color="k", lw=2.2, label="random", zorder=4)
    marks: list[tuple[float, float, str, Any]] = []
    for sel in rest:  # under the named ones
        g = agg[agg["selector"] == sel].sort_values("fraction")
        ax.plot(g["fraction"], np.clip(g["mean"], *lims), color=OTHER, lw=0.8, marker=".", ms=3, zorder=2)
        marks += [(x, y, sel, "0.45") for x, y in zip(g["fraction"], g["mean"], strict=True)]
    for sel in named:
        g = agg[agg["selector"] == sel].sort_values("fraction")
        ax.plot(g["fraction"], np.clip(g["mean"], *lims), lw=1.6, ms=6, label=_label(summary, metric, sel),
                zorder=3, **style[sel])
        marks += [(x, y, sel, style[sel]["color"]) for x, y in zip(g["fraction"], g["mean"], strict=True)]
    if len(full):
        ax.axhline(float(full.mean()), color="k", ls="--", lw=1, label=f"whole pool ({full.mean():.3f})")
    ax.set_xscale("log")
    ax.set_xticks(fracs, [f"{f * 100:g} %" for f in fracs])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("fraction of the pool (log scale)")
    ax.set_ylabel(f"{metric} (mean over seeds)")
    ax.set_ylim(*lims)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if rest:
        handles.append(Line2D([], [], color=OTHER, lw=0.8, marker=".", ms=3))
        labels.append(f"the other {len(rest)} selectors")
    ax.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5),
              ncol=1 + len(labels) // 28)
    fig.tight_layout()
    if marks:
        xs, ys, names, colors = (list(c) for c in zip(*marks, strict=True))
        _clip_marks(ax, np.asarray(xs, float), np.asarray(ys, float), lims, axis="y", fmt="{:.3f}",
                    names=names, colors=colors)
    return fig


def cost_figure(ok: pd.DataFrame, summary: pd.DataFrame, metric: str,
                cost: pd.DataFrame | None = None) -> Any:
    """``cost.png``: seconds (features + selection where ``cost`` has them, else selection
    alone) against Δ vs random, one marker shape per fraction; the :func:`highlighted`
    selectors in colour, the rest grey, random the zero line."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    s = summary[(summary["metric"] == metric) & ~summary["selector"].isin([BASELINE_KEY, FULL_KEY])]
    secs = ok.groupby(["selector", "fraction"])["selection_seconds"].mean()
    what = "selection seconds"
    if cost is not None and len(cost) and np.isfinite(cost["cost_seconds"].astype(float)).all():
        secs, what = cost.set_index(["selector", "fraction"])["cost_seconds"], "seconds added (features + selection)"
    s = s.assign(sec=[secs.get((a, b), np.nan) for a, b in zip(s["selector"], s["fraction"], strict=True)])
    s = s[np.isfinite(s["delta"].astype(float))]
    if s.empty:
        return None
    named = highlighted(s, metric)
    style = selector_styles(named)
    shapes = dict(zip(sorted(s["fraction"].unique()), "osD^vP*X", strict=False))
    lims = robust_limits(np.r_[s["delta"], 0.0].astype(float) * 100, min_span=2.0)
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    ax.axhline(0, color="k", lw=1.4, label="random (Δ = 0)", zorder=1)
    s = s.assign(named=s["selector"].isin(named)).sort_values("named", kind="stable")  # grey first, under
    colors = []
    for r in s.itertuples():
        color = style[r.selector]["color"] if r.named else OTHER
        colors.append(color if r.named else "0.45")
        ax.scatter(max(r.sec, 1e-3), np.clip(r.delta * 100, *lims), color=color, marker=shapes[r.fraction],
                   s=46 if r.named else 22, edgecolor="k" if r.named else "none", linewidth=0.4,
                   zorder=3 if r.named else 2)
    ax.set_xscale("log")
    ax.set_ylim(*lims)
    ax.set_xlabel(f"{what}, mean over seeds (log scale)")
    ax.set_ylabel(f"Δ {metric} vs random (points)")
    ax.grid(alpha=0.3)
    handles = [Line2D([], [], color="k", lw=1.4, label="random (Δ = 0)")]
    handles += [Line2D([], [], ls="", marker="o", color=style[sel]["color"], markeredgecolor="k",
                       label=_label(s, metric, sel)) for sel in named]
    n_rest = s.loc[~s["named"], "selector"].nunique()
    if n_rest:
        handles.append(Line2D([], [], ls="", marker="o", color=OTHER, label=f"the other {n_rest} selectors"))
    handles += [Line2D([], [], ls="", marker=m, color="0.3", label=f"{f * 100:g} %") for f, m in shapes.items()]
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    _clip_marks(ax, np.maximum(s["sec"].to_numpy(float), 1e-3), s["delta"].to_numpy(float) * 100, lims,
                axis="y", names=s["selector"].tolist(), colors=colors)
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
    figs = {"forest.png": forest_figure(summary, metric, mde),
            "efficiency.png": efficiency_figure(ok, metric, summary),
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
