"""Where a sweep's wall time goes: stage marks, trial work, and the overhead left.

The sweep records the wall time of each stage (Ray start-up, stand-ins,
features, select, Tune, report) and every trial's own seconds, and writes
``<study>/timeline.json``. :func:`overhead` turns that into the figures
BENCHMARKS.md reports (issue 16, item 4): the work is the feature and
select stages plus the trials' train + eval seconds spread over the trial
slots; everything else (Ray start-up, Tune's scheduling gaps, per-trial
set-up, the report) is overhead, to be kept at most 10 % of the wall time.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["TIMELINE_FILE", "Timeline", "overhead", "trial_times"]

TIMELINE_FILE = "timeline.json"
WORK_STAGES = ("features", "select")
"""Stages counted as work; the trials' train + eval seconds are the rest of it."""


class Timeline:
    """Wall-clock seconds per named stage since the sweep started (monotonic clock)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.stages: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the time spent inside the block to ``name`` (also when it raises)."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - t

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def write(self, study: Path, trials: list[dict[str, Any]], slots: int) -> dict[str, Any]:
        """Write ``timeline.json`` (stages, trials, slots, total) and return it with :func:`overhead`."""
        data = {"total_s": self.elapsed(), "stages": dict(self.stages), "slots": int(slots),
                "trials": trials}
        data["overhead"] = overhead(data)
        tmp = study / f".{TIMELINE_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=1, default=float))
        tmp.replace(study / TIMELINE_FILE)
        return data


def trial_times(results: Iterable[Any]) -> list[dict[str, Any]]:
    """Per-trial seconds from Tune results (``ResultGrid`` items or plain metric dicts).

    ``wall_s`` is Tune's ``time_total_s`` (the trainable's run, set-up and
    file writes included); ``work_s`` the trial's own ``train_seconds`` +
    ``eval_seconds`` (0 for an errored trial, and for one whose finished
    result was reused: its seconds were spent by an earlier sweep, and
    counting them here would make this sweep's set-up negative).
    """
    out = []
    for r in results:
        m = r if isinstance(r, Mapping) else (getattr(r, "metrics", None) or {})
        wall = float(m.get("time_total_s") or 0.0)
        reused = bool(m.get("reused"))
        work = 0.0 if reused else float(m.get("train_seconds") or 0.0) + float(m.get("eval_seconds") or 0.0)
        end = m.get("timestamp")
        out.append({"trial": m.get("trial_id"), "wall_s": wall, "work_s": work,
                    "end": float(end) if end is not None else None, "reused": reused,
                    "error": bool(m.get("trial_error")) or getattr(r, "error", None) is not None})
    return out


def overhead(data: Mapping[str, Any]) -> dict[str, float]:
    """The overhead table of a timeline (see the module docstring).

    Returns seconds for ``total``, each stage, ``trial_work`` (sum of train +
    eval), ``trial_wall`` (sum of trial wall), ``trial_setup`` (their
    difference), ``tune_gaps`` (Tune's wall minus the trial wall per slot:
    scheduling, actor start-up, result handling) and ``overhead`` (total
    minus the work stages minus trial work per slot), with ``overhead_frac``.
    """
    stages = dict(data.get("stages") or {})
    slots = max(1, int(data.get("slots") or 1))
    trials = list(data.get("trials") or [])
    total = float(data["total_s"])
    work = sum(float(t["work_s"]) for t in trials)
    wall = sum(float(t["wall_s"]) for t in trials)
    tune = float(stages.get("tune", 0.0))
    busy = sum(float(stages.get(s, 0.0)) for s in WORK_STAGES) + work / slots
    out = {"total": total, **{f"stage_{k}": float(v) for k, v in stages.items()},
           "unstaged": total - sum(float(v) for v in stages.values()),
           "trials": float(len(trials)), "slots": float(slots),
           "trial_work": work, "trial_wall": wall, "trial_setup": wall - work,
           "tune_gaps": tune - wall / slots, "overhead": total - busy}
    out["overhead_frac"] = out["overhead"] / total if total > 0 else math.nan
    return out
