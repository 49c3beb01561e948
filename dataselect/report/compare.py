"""Two studies of the same arms side by side: where their verdicts agree, and where not.

A selector's standing can depend on the regime it is judged in: a linear
probe on frozen embeddings (cheap, hundreds of trials in minutes) against a
fine-tuned encoder (the question the project exists for). Issue 27 asks for
both on one grid and for the places they disagree. This joins two studies'
``summary.csv`` on selector × fraction and gives, per row, each study's Δ
vs random with its interval and its Holm verdict (``better`` / ``worse``
when ``p_holm < 0.05``, else ``neither``), whether the verdicts agree and
whether the signs of Δ do, and per fraction the Spearman correlation of the
two Δ rankings. Nothing is re-estimated: each study's own intervals and
Holm family stand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dataselect.core.errors import UserError

__all__ = ["compare_lines", "compare_summaries", "load_summary", "rank_agreement", "verdict"]


def load_summary(study: Path) -> pd.DataFrame:
    """``<study>/report/summary.csv``, or a :class:`UserError` naming the file."""
    path = Path(study) / "report" / "summary.csv"
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read the study's summary ({err.__class__.__name__}); "
                        f"write it with `python -m dataselect report {study}`") from err


def verdict(delta: float, p_holm: float) -> str:
    """``better`` / ``worse`` than random after Holm (p < 0.05), else ``neither``."""
    if not np.isfinite(p_holm) or p_holm >= 0.05:
        return "neither"
    return "better" if delta > 0 else "worse"


def compare_summaries(a: pd.DataFrame, b: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """One row per selector × fraction present in both: Δ, interval and verdict of each, and agreement."""
    cols = ["selector", "fraction", "delta", "ci_low", "ci_high", "p_holm"]
    for name, df in (("first", a), ("second", b)):
        missing = [c for c in (*cols, "metric") if c not in df]
        if missing:
            raise UserError(f"summary of the {name} study: missing columns {missing}")
    pick = [d[(d["metric"] == metric) & d["delta"].notna()][cols] for d in (a, b)]
    out = pick[0].merge(pick[1], on=["selector", "fraction"], suffixes=("_a", "_b"))
    out["verdict_a"] = [verdict(d, p) for d, p in zip(out["delta_a"], out["p_holm_a"], strict=True)]
    out["verdict_b"] = [verdict(d, p) for d, p in zip(out["delta_b"], out["p_holm_b"], strict=True)]
    out["agree"] = out["verdict_a"] == out["verdict_b"]
    out["same_sign"] = np.sign(out["delta_a"]) == np.sign(out["delta_b"])
    return out.sort_values(["fraction", "delta_b"], ascending=[True, False], kind="stable").reset_index(drop=True)


def rank_agreement(table: pd.DataFrame) -> dict[float, float]:
    """Per fraction, Spearman's ρ between the two studies' Δ (nan under 3 selectors)."""
    from scipy.stats import spearmanr

    out = {}
    for frac, g in table.groupby("fraction", sort=True):
        out[float(frac)] = float(spearmanr(g["delta_a"], g["delta_b"]).statistic) if len(g) >= 3 else float("nan")
    return out


def compare_lines(table: pd.DataFrame, name_a: str, name_b: str, metric: str = "accuracy") -> list[str]:
    """A markdown section: the conclusion first, then every row, disagreements marked."""
    rho = rank_agreement(table)
    n_dis = int((~table["agree"]).sum())
    lines = [f"# `{name_a}` vs `{name_b}`: Δ {metric} vs random, selector by selector", "",
             f"**{len(table) - n_dis} of {len(table)} selector × fraction verdicts agree** (better / worse "
             "than random after each study's own Holm correction, or neither); "
             + "; ".join(f"Spearman ρ of the Δ rankings at {f * 100:g} %: {r:+.2f}" for f, r in rho.items())
             + ".", "",
             f"| fraction | selector | Δ {name_a} (95 % CI) | verdict | Δ {name_b} (95 % CI) | verdict | agree |",
             "|---|---|---|---|---|---|---|"]
    def cell(d: float, lo: float, hi: float) -> str:
        return f"{d * 100:+.1f} [{lo * 100:+.1f}, {hi * 100:+.1f}]"

    for r in table.itertuples():
        mark = "yes" if r.agree else ("**no**" if not r.same_sign else "no (same sign)")
        lines.append(f"| {r.fraction * 100:g} % | {r.selector} | {cell(r.delta_a, r.ci_low_a, r.ci_high_a)} | "
                     f"{r.verdict_a} | {cell(r.delta_b, r.ci_low_b, r.ci_high_b)} | {r.verdict_b} | {mark} |")
    return lines + [""]
