"""Screen, then confirm: the rule that chooses a confirmatory study's arms, and what its report states.

A screen (many arms, few seeds, often a cheap trainer) ranks the arms; a
confirmatory study trains the ``k`` it chose per fraction beside ``random`` on
fresh seeds and tests only those, Holm over ``k`` per fraction. Choosing and
testing on the same trials is a winner's curse: the largest of 27 noisy Δ is
biased upward. Fresh seeds make the confirm stage's seed noise independent of
the choice; the eval rows are the part a screen scored on the same rows
shares with its confirmation, which is why :func:`choose` is fed the screen's
validation-row summary when it has one (:mod:`dataselect.report.validation`).
``tests/report/test_confirm_sim.py`` simulates the design.

The arms are resolved and pre-registered by :mod:`dataselect.sweep.confirm`
before anything trains; the pre-registration travels in ``study.json``
(``preregistration``), so the statement is rewritten from an archive as well.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dataselect.report.results import BASELINE_KEY, FULL_KEY
from dataselect.report.tables import md_cell

__all__ = ["RULE_COLUMN", "choose", "confirm_lines", "screen_overlap"]

RULE_COLUMN = {"top_delta": "delta", "top_lower": "ci_low"}
"""The summary column each rule ranks the arms by (largest first)."""


def choose(summary: pd.DataFrame, rule: str, k: int, metric: str,
           fractions: list[float]) -> dict[float, pd.DataFrame]:
    """Per fraction, the ``k`` arms ``rule`` picks from a screen's ``summary`` (``summary.csv``'s columns).

    ``top_delta`` ranks by Δ vs random, ``top_lower`` by the lower 95 % bound;
    largest first, ties by selector name. ``random`` and ``full`` are never
    chosen, nor an arm without a value of the rule's column (under 2 seed
    pairs there is no bound). A fraction with fewer than ``k`` such arms
    keeps those it has. Rows: ``selector``, ``rank``, ``delta``, ``ci_low``, ``ci_high``.
    """
    col = RULE_COLUMN[rule]
    s = summary[(summary["metric"] == metric) & ~summary["selector"].isin([BASELINE_KEY, FULL_KEY])]
    out: dict[float, pd.DataFrame] = {}
    for f in fractions:
        g = s[np.isclose(s["fraction"].astype(float), f, rtol=0, atol=1e-12)]
        g = g[np.isfinite(g[col].astype(float))]
        g = g.sort_values([col, "selector"], ascending=[False, True], kind="stable").head(k)
        g = g.assign(rank=np.arange(1, len(g) + 1))
        out[float(f)] = g[["selector", "rank", "delta", "ci_low", "ci_high"]].reset_index(drop=True)
    return out


def screen_overlap(df: pd.DataFrame, prereg: dict[str, Any]) -> list[str]:
    """Trials of the confirm study's results that could carry screening data: a seed the screen
    used, or a result adopted from the screen's folder. Empty when none (the design's promise)."""
    if df.empty:
        return []
    screen = prereg.get("screen") or {}
    seeds = {int(s) for s in screen.get("seeds") or []}
    bad = df[df["seed"].astype(int).isin(seeds)]["trial"].tolist() if "seed" in df else []
    if "reused_from" in df and screen.get("path"):
        name = str(screen["path"]).rstrip("/").split("/")[-1]
        src = df["reused_from"].fillna("").astype(str)
        bad += df[src.str.contains(f"/{name}/", regex=False) | src.str.startswith(f"{name}/")]["trial"].tolist()
    return sorted(set(bad))


def confirm_lines(meta: dict[str, Any], df: pd.DataFrame, summary: pd.DataFrame, metric: str) -> list[str]:
    """The report's "Confirmatory design" section: the rule, the screen, the registered arms beside
    their confirmed Δ, and whether any screening trial entered these statistics. [] for other studies."""
    prereg = meta.get("preregistration")
    if not prereg:
        return []
    screen = prereg.get("screen") or {}
    arms = prereg.get("arms") or {}
    family = ((meta.get("config") or {}).get("report") or {}).get("holm") or "fraction"
    k = int(prereg.get("k", 0))
    rule = {"top_delta": "the largest Δ vs random", "top_lower": "the largest lower 95 % bound of Δ"}.get(
        prereg.get("rule"), str(prereg.get("rule")))
    basis = ("its validation rows (`validation_summary.csv`: rows apart from the eval set)"
             if prereg.get("basis") == "validation" else
             "its eval rows (`summary.csv`; the screen had no validation holdout, so the eval rows' own "
             "noise is shared with this study where both score the same eval set)")
    seeds = [int(s) for s in prereg.get("seeds") or []]
    lines = ["## Confirmatory design", "",
             f"A confirmatory study of screen **{md_cell(screen.get('name'))}** (`{md_cell(screen.get('path'))}`, "
             f"`{md_cell(screen.get('summary'))}` sha256 `{str(screen.get('sha256', ''))[:16]}`…). "
             f"Rule, pre-registered in `preregistration.json` on {prereg.get('written', '?')} before any "
             f"training: per fraction the {k} arms with {rule} on {prereg.get('metric')} in the screen, "
             f"judged on {basis}. They were trained beside `random` on {len(seeds)} fresh seeds "
             f"({_seeds(seeds)}), disjoint from the screen's ({_seeds(screen.get('seeds') or [])}), and "
             + ("each fraction's Holm family is its chosen arms only." if family == "fraction" else
                "the Holm family is every chosen arm of the study (`report.holm: study`)."), ""]
    overlap = screen_overlap(df, prereg)
    if overlap:
        lines += [f"**Warning:** {len(overlap)} trial(s) used a screen seed or were adopted from the screen "
                  f"({md_cell(', '.join(overlap[:5]))}): the design's independence does not hold for them.", ""]
    else:
        lines += ["No screening trial enters these statistics: every trial here ran on a seed the screen "
                  "never used (so none can be a screen trial, nor be adopted from one), and none was "
                  "adopted from the screen's folder.", ""]
    lines += [f"| fraction | rank | selector | screen Δ | screen 95 % CI | confirmed Δ {metric} | 95 % CI | "
              "p (Holm) |", "|---|---|---|---|---|---|---|---|"]
    s = summary[summary["metric"] == metric] if len(summary) else summary
    for frac, chosen in sorted(arms.items(), key=lambda kv: float(kv[0])):
        for a in chosen:
            row = (s[(s["selector"] == a["selector"])
                     & np.isclose(s["fraction"].astype(float), float(frac), rtol=0, atol=1e-12)]
                   if len(s) else s)
            got = row.iloc[0] if len(row) else None
            lines.append(f"| {float(frac) * 100:g} % | {a['rank']} | {md_cell(a['selector'])} | "
                         f"{_pts(a.get('delta'))} | {_ci(a.get('ci_low'), a.get('ci_high'))} | "
                         + ("n/a | n/a | n/a |" if got is None else
                            f"{_pts(got['delta'])} | {_ci(got['ci_low'], got['ci_high'])} | "
                            f"{_p(got['p_holm'])} |"))
    return [*lines, ""]


def _seeds(seeds: list[Any]) -> str:
    s = sorted(int(x) for x in seeds)
    if len(s) > 2 and s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}–{s[-1]}"
    return ", ".join(map(str, s)) or "none"


def _pts(x: Any) -> str:
    return f"{float(x) * 100:+.1f}" if x is not None and np.isfinite(float(x)) else "n/a"


def _ci(lo: Any, hi: Any) -> str:
    if lo is None or hi is None or not (np.isfinite(float(lo)) and np.isfinite(float(hi))):
        return "n/a"
    return f"[{float(lo) * 100:+.1f}, {float(hi) * 100:+.1f}]"


def _p(x: Any) -> str:
    return f"{float(x):.3f}" if x is not None and np.isfinite(float(x)) else "n/a"
