"""Arms scored on the validation holdout: what a study chooses its contenders by.

A study with ``dataset.validation_holdout`` has every trial score a second
set of rows, drawn from the train split apart from the eval set, the target
and the pool (:mod:`dataselect.core.holdout`): per-row predictions in
``trials/<trial>/validation_predictions.parquet`` and ``validation_<metric>``
in its result. Choosing the arms to carry on (a screen stage's contenders,
a recipe) on these rows leaves the eval rows fresh for the comparison that
is reported: choosing on the eval set, then reporting on it, is a winner's
curse.

The API, for a screen -> confirm design:

* :func:`validation_frame` -- the results with each metric column replaced
  by its validation score (trials without one dropped);
* :func:`validation_summary` -- :func:`~dataselect.report.tables.summary_table`
  on those rows and predictions: every arm's Δ against ``random`` with the
  same paired, seed × row interval and Holm correction as the eval summary;
* :func:`ranking` -- per fraction, the arms ordered by that Δ, best first
  (:func:`contenders` takes the first ``k``).

The report writes ``validation_summary.csv`` and a "Ranking on the
validation holdout" section whenever trials carry validation predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dataselect.report.results import BASELINE_KEY, FULL_KEY, STATUS_OK
from dataselect.report.tables import fmt_num, md_cell, summary_table
from dataselect.train.metrics import METRICS

__all__ = ["VALIDATION_FILE", "VALIDATION_PREFIX", "contenders", "ranking", "validation_frame",
           "validation_lines", "validation_summary"]

VALIDATION_FILE = "validation_predictions.parquet"
"""Per trial, its predictions on the validation rows (written by :mod:`dataselect.sweep.trial`)."""

VALIDATION_PREFIX = "validation_"
"""Prefix of the validation metrics in a trial's result (:data:`dataselect.train.VALIDATION_PREFIX`)."""


def validation_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (``results.csv``'s rows) with each metric replaced by its validation score;
    finished trials without one are left out. Empty when no trial has one."""
    cols = [VALIDATION_PREFIX + m for m in METRICS]
    if df.empty or not all(c in df for c in cols):
        return df.iloc[0:0]
    has = df[cols[0]].notna() & (df["status"] == STATUS_OK)
    out = df[has].drop(columns=list(METRICS)).rename(columns=dict(zip(cols, METRICS, strict=True)))
    return out.reset_index(drop=True)


def validation_summary(df: pd.DataFrame, preds: dict[str, pd.DataFrame], num_labels: int,
                       holm_family: str = "fraction") -> pd.DataFrame:
    """Every arm against ``random`` on the validation rows: ``summary.csv``'s columns.

    ``preds`` is ``{trial: validation predictions}`` (:data:`VALIDATION_FILE`); ``df`` the
    study's results (validation metrics not yet swapped in: :func:`validation_frame` does).
    """
    return summary_table(validation_frame(df), preds, num_labels, holm_family)


def ranking(summary: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Per fraction, the arms (not ``random``, not ``full``) by Δ on ``metric``, best first.

    Columns ``fraction``, ``rank`` (1 = best), ``selector``, ``delta``, ``ci_low``,
    ``ci_high``, ``p_holm``, ``n_pairs``. Arms without a Δ are last.
    """
    s = summary[(summary["metric"] == metric) & ~summary["selector"].isin([BASELINE_KEY, FULL_KEY])
                & (summary["fraction"] < 1)].copy()
    s = s.sort_values(["fraction", "delta", "selector"], ascending=[True, False, True], na_position="last",
                      kind="stable")
    s["rank"] = s.groupby("fraction").cumcount() + 1
    return s[["fraction", "rank", "selector", "delta", "ci_low", "ci_high", "p_holm", "n_pairs"]
             ].reset_index(drop=True)


def contenders(summary: pd.DataFrame, k: int, metric: str = "accuracy") -> dict[float, list[str]]:
    """The ``k`` best arms per fraction on the validation rows (``fraction -> selectors``)."""
    r = ranking(summary, metric)
    return {float(f): g["selector"].head(k).tolist() for f, g in r.groupby("fraction")}


def validation_lines(summary: pd.DataFrame, metric: str, n_rows: int | None) -> list[str]:
    """The report's section: the ranking per fraction, Δ and interval on the validation rows."""
    r = ranking(summary, metric)
    if r.empty:
        return []
    rows = f"{n_rows:,} " if n_rows else ""
    lines = ["### Ranking on the validation holdout", "",
             f"Δ {metric} vs `random` on the {rows}validation rows (whole train sentences apart from the "
             "eval set, the target and the pool: `dataset.validation_holdout`), same test and Holm "
             "correction as above. Choose arms here, not on the eval tables, so that the eval rows "
             "stay fresh for the comparison reported (`validation_summary.csv`).", "",
             "| fraction | rank | selector | Δ | 95 % CI | p (Holm) | seeds |", "|---|---|---|---|---|---|---|"]
    for d in r.to_dict("records"):
        ci = (f"[{d['ci_low'] * 100:+.1f}, {d['ci_high'] * 100:+.1f}]" if np.isfinite(d["ci_low"])
              else "n/a")
        delta = f"{d['delta'] * 100:+.1f}" if np.isfinite(d["delta"]) else "n/a"
        lines.append(f"| {d['fraction']:g} | {d['rank']} | {md_cell(d['selector'])} | {delta} | {ci} | "
                     f"{fmt_num(d['p_holm'], 3)} | {int(d['n_pairs'])} |")
    return [*lines, ""]


def write_validation(out: Path, reader: Any, df: pd.DataFrame, trials: list[str], num_labels: int,
                     family: str, metric: str, n_rows: int | None) -> list[str]:
    """``validation_summary.csv`` into ``out`` and the report's lines, when trials scored validation rows."""
    preds = reader.frames(trials, VALIDATION_FILE)
    if not preds:
        return []
    summary = validation_summary(df, preds, num_labels, family)
    summary.to_csv(out / "validation_summary.csv", index=False)
    return validation_lines(summary, metric, n_rows)
