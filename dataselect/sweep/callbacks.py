"""Tune callbacks of the sweep (imported only where Ray Tune runs)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from ray.tune import Callback


class NoRetryOnOwnError(Callback):
    """Lost workers are retried, a trial's own error is not.

    ``FailureConfig(max_failures=N)`` restarts a trial after any failure. A
    trial that fails by its own error (:func:`dataselect.sweep.run_trial_reported`)
    first reports ``{"trial_error": ...}`` and then raises; on that result this
    callback sets the trial's ``max_failures`` to 0, so the raise ends it as
    ERROR at once (Tune processes a reported result before the trainable runs
    on). A worker or node that dies reports nothing and keeps its retries.
    """

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        if result.get("trial_error"):
            trial.max_failures = 0


class TrialLines(Callback):
    """The sweep's console: a line per finished, failed or retried trial, and a status table.

    Tune's own console output is off (``RunConfig(verbose=0)``): its status
    table repeated every 30 s whether or not anything changed, and named the
    grid axes by dict. Here each finished trial is one line with the time
    left, estimated from the trials finished so far (mean wall seconds x
    trials left / slots); the table (counts, running and failed trials, the
    last finished) is printed when something changed since the last one, at
    most every ``table_every_s`` seconds, and once at the end.
    """

    def __init__(self, total: int | None = None, *, slots: int = 1, table_every_s: float = 120.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logging.getLogger("dataselect.sweep")
        self._done = 0
        self._n = total
        self._slots = max(1, slots)
        self._every = table_every_s
        self._clock = clock
        self._started: dict[str, float] = {}
        self._walls: list[float] = []
        self._finished: list[tuple[str, str, dict[str, Any]]] = []
        self._changed = False
        self._last_table = clock()

    def _total(self, trials: list[Any]) -> int:
        # Tune creates grid trials lazily (max_concurrent_trials): len(trials) lags.
        return max(self._n or 0, len(trials))

    def eta_seconds(self, total: int) -> float | None:
        """Seconds left: mean wall time of the finished trials that trained x trials left / slots."""
        if not self._walls:
            return None
        return float(np.mean(self._walls)) * max(total - self._done, 0) / self._slots

    def _end(self, trial: Any, status: str) -> None:
        self._done += 1
        self._changed = True
        t0 = self._started.pop(str(trial), None)
        # A reused result took no training: its wall would make the time left look like seconds.
        if t0 is not None and status == "done" and not (trial.last_result or {}).get("reused"):
            self._walls.append(self._clock() - t0)
        self._finished.append((str(trial), status, dict(trial.last_result or {})))

    def _progress(self, trials: list[Any]) -> str:
        total = self._total(trials)
        eta = self.eta_seconds(total)
        left = "" if eta is None or self._done >= total else f", about {_duration(eta)} left"
        return f"{self._done}/{total}{left}"

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._started[str(trial)] = self._clock()
        self._changed = True

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._end(trial, "done")
        r = trial.last_result or {}
        acc = r.get("accuracy")
        what = f"accuracy {acc:.4f}" if isinstance(acc, (int, float)) else "no metrics"
        secs = r.get("time_total_s")
        took = (", reused (trained earlier)" if r.get("reused")
                else f" in {secs:.0f} s" if isinstance(secs, (int, float)) else "")
        self._log.info("trial %s done: %s%s (%s)", trial, what, took, self._progress(trials))

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._end(trial, "ERROR")
        err = (trial.last_result or {}).get("trial_error") or "worker lost; retries used up"
        self._log.warning("trial %s failed: %s (%s; see results.csv)", trial, err, self._progress(trials))

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        n = trial.run_metadata.num_failures
        self._started.pop(str(trial), None)
        self._changed = True
        self._log.warning("trial %s lost its worker (failure %d of at most %s retries); restarting it",
                          trial, n, trial.max_failures)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        # Once every trial has ended the table waits for on_experiment_end: Tune steps once
        # more after the last trial, and both printed the same final table.
        if (self._changed and self._clock() - self._last_table >= self._every
                and self._done < self._total(trials)):
            self._log.info("%s", self.table(trials))

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self._log.info("%s", self.table(trials))

    def table(self, trials: list[Any]) -> str:
        """Counts by status, then the running and failed trials and the last few finished."""
        self._changed, self._last_table = False, self._clock()
        total = self._total(trials)
        running = sorted(self._started)
        failed = [f for f in self._finished if f[1] == "ERROR"]
        done = [f for f in self._finished if f[1] == "done"]
        pending = max(total - self._done - len(running), 0)
        head = (f"trials: {len(running)} running, {len(done)} done, {len(failed)} failed, {pending} "
                f"pending ({self._progress(trials)})")
        rows = [(name, "RUNNING", {}) for name in running] + failed + done[-5:]
        if not rows:
            return head
        width = max(len(r[0]) for r in rows)
        lines = [head, f"  {'trial':<{width}}  {'status':<7}  accuracy  macro-F1   rows"]
        for name, status, r in rows:
            acc, f1, n = r.get("accuracy"), r.get("macro_f1"), r.get("n_train")
            lines.append(f"  {name:<{width}}  {status:<7}  {_num(acc):>8}  {_num(f1):>8}  "
                         f"{n if isinstance(n, int) else '':>5}")
        return "\n".join(lines)


def _num(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) else ""


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2 h 05 min``: a time left, to the precision it has."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = int(seconds / 60 + 0.5)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60:02d} min"
