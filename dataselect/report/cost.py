"""What each selector costs, and whether random rows bought with the same seconds would do better.

A selector's cost is the compute it adds to a plain random subset: the feature
families it reads (pool and target; from ``study.json``'s ``feature_costs``,
each family's compute seconds as the sweep recorded them) plus its selection
seconds (warm-up heads of EL2N, forgetting, margins included: they run inside
the selection). The break-even question: spend those seconds on training
instead, i.e. fine-tune on more random rows. With the study's trainer, a
subset of ``r`` rows costs ``examples(r) = max(ceil(epochs · ceil(r / batch)),
min_steps) · batch`` training examples at the rate measured on the study's
random trials (examples per second), so the same seconds buy ``r*`` random
rows with ``examples(r*) = examples(budget) + cost · rate``; random's score
at ``r*`` is read off its curve (linear in log rows through the random
fractions and the whole pool; capped at the pool). The comparison is in
compute only: ``r*`` random rows also need ``r* - budget`` more labels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from dataselect.core.errors import UserError
from dataselect.report.results import BASELINE_KEY, FULL_KEY, STATUS_OK

COST_COLUMNS = ("selector", "fraction", "budget", "feature_seconds", "selection_seconds", "cost_seconds",
                "mean", "random_mean", "breakeven_rows", "random_at_breakeven", "worth_it")


def _examples(rows: float, trainer: dict[str, Any]) -> float:
    """Training examples a trial of ``rows`` rows sees (the trainer's step rule)."""
    if trainer.get("mode", "finetune") != "finetune":
        return float(rows)
    batch = int(trainer.get("batch_size", 32))
    steps = max(1, math.ceil(float(trainer.get("epochs", 1)) * math.ceil(rows / batch)),
                int(trainer.get("min_steps", 0)))
    return float(steps * min(batch, rows))


def selector_feature_seconds(selector: str, params: dict[str, Any],
                             costs: dict[str, dict[str, dict[str, Any]]]) -> float | None:
    """Compute seconds of the feature families ``selector`` reads (None if any is unrecorded)."""
    from dataselect.core.selection import TARGET_PREFIX
    from dataselect.selectors import get_selector

    need = set(get_selector(selector, **params).required()) - {"id", "label"}
    if need and not costs:  # a study from before feature costs were recorded
        return None
    total = 0.0
    for table, prefix in (("pool", ""), ("target", TARGET_PREFIX)):
        for fam in (costs.get(table) or {}).values():
            if any(prefix + c in need for c in fam.get("columns", [])):
                if fam.get("seconds") is None:
                    return None
                total += float(fam["seconds"])
    return total


def random_curve(ok: pd.DataFrame, metric: str, n_pool: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(rows, mean metric) of random at each fraction, and of the whole pool, sorted by rows."""
    pts = ok[ok["selector"] == BASELINE_KEY].groupby("budget")[metric].mean()
    full = ok.loc[ok["selector"] == FULL_KEY, metric]
    if len(full) and n_pool:
        pts = pd.concat([pts, pd.Series([float(full.mean())], index=[n_pool])])
    pts = pts.groupby(level=0).mean().sort_index()
    return pts.index.to_numpy(float), pts.to_numpy(float)


def at_rows(rows: float, curve: tuple[np.ndarray, np.ndarray]) -> float:
    """The curve's value at ``rows`` (linear in log rows; flat beyond its ends)."""
    x, y = curve
    if len(x) == 0:
        return float("nan")
    return float(np.interp(math.log(rows), np.log(x), y))


def breakeven_rows(budget: int, cost: float, rate: float, trainer: dict[str, Any], n_pool: int) -> int:
    """The most random rows whose training costs at most ``budget``'s plus ``cost`` seconds."""
    room = _examples(budget, trainer) + cost * rate
    lo, hi = budget, n_pool
    while lo < hi:  # examples() is non-decreasing in rows
        mid = (lo + hi + 1) // 2
        if _examples(mid, trainer) <= room:
            lo = mid
        else:
            hi = mid - 1
    return lo


def cost_table(df: pd.DataFrame, meta: dict[str, Any], metric: str) -> pd.DataFrame:
    """One row per selector × fraction (not random, not full): :data:`COST_COLUMNS`."""
    ok = df[df["status"] == STATUS_OK]
    cfg = meta.get("config") or {}
    trainer = cfg.get("trainer") or {}
    n_pool = int((meta.get("dataset") or {}).get("n_pool") or 0)
    costs = meta.get("feature_costs") or {}
    base = ok[ok["selector"] == BASELINE_KEY]
    if base.empty or not n_pool or "train_seconds" not in ok:
        return pd.DataFrame(columns=COST_COLUMNS)
    ex = np.array([_examples(b, trainer) for b in base["budget"]])
    secs = float(np.nansum(base["train_seconds"]))
    if secs <= 0:  # no training time recorded: no rate to convert seconds into rows
        return pd.DataFrame(columns=COST_COLUMNS)
    rate = float(np.nansum(ex)) / secs  # examples per second
    curve = random_curve(ok, metric, n_pool)
    specs = {s.get("label") or s["name"]: s for s in cfg.get("selectors") or []}
    out = []
    for (sel, frac), g in ok.groupby(["selector", "fraction"], sort=True):
        if sel in (BASELINE_KEY, FULL_KEY):
            continue
        budget = int(g["budget"].iloc[0])
        spec = specs.get(sel, {})
        try:
            fsec = selector_feature_seconds(spec.get("name", str(g["name"].iloc[0])),
                                            dict(spec.get("params") or {}), costs)
        except (UserError, TypeError):  # a selector or parameter this code no longer knows
            fsec = None
        ssec = float(g["selection_seconds"].mean())
        total = (fsec or 0.0) + ssec
        r_star = breakeven_rows(budget, total, rate, trainer, n_pool)
        rand = base.loc[base["fraction"] == frac, metric]
        mean = float(g[metric].mean())
        at = at_rows(r_star, curve)
        out.append({"selector": sel, "fraction": frac, "budget": budget, "feature_seconds": fsec,
                    "selection_seconds": ssec, "cost_seconds": total if fsec is not None else float("nan"),
                    "mean": mean, "random_mean": float(rand.mean()) if len(rand) else float("nan"),
                    "breakeven_rows": r_star, "random_at_breakeven": at, "worth_it": bool(mean > at)})
    return pd.DataFrame(out, columns=COST_COLUMNS)


def cost_lines(table: pd.DataFrame, metric: str) -> list[str]:
    """The report's "Cost and break-even" section."""
    if table.empty:
        return []
    lines = ["## Cost and break-even", "",
             "Seconds each selector adds to a random subset (the feature families it reads, pool and "
             "target, plus its selection, warm-up heads included), and what random would score "
             "trained on the rows those seconds buy with this trainer (same recipe; linear in log "
             f"rows between random's fractions and the whole pool). {metric}; means over seeds. "
             "Compute only: the extra random rows also need labels.", "",
             "| selector | fraction | features s | selection s | total s | mean | random | "
             "random rows for the same seconds | random there | worth its seconds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        fs = "n/a" if r.feature_seconds is None or not np.isfinite(r.feature_seconds) else f"{r.feature_seconds:.0f}"
        tot = "n/a" if not np.isfinite(r.cost_seconds) else f"{r.cost_seconds:.0f}"
        lines.append(f"| {r.selector} | {r.fraction:g} | {fs} | {r.selection_seconds:.1f} | {tot} | "
                     f"{r.mean:.4f} | {r.random_mean:.4f} | {r.breakeven_rows:,} | "
                     f"{r.random_at_breakeven:.4f} | {'yes' if r.worth_it else 'no'} |")
    n_yes = int(table["worth_it"].sum())
    lines += ["", f"{n_yes} of {len(table)} selector × fraction cells beat random trained on the rows "
              "their seconds would buy.", ""]
    return lines
