"""Tune callbacks of the sweep (imported only where Ray Tune runs)."""

from __future__ import annotations

import logging
from typing import Any

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
    """One console line per finished, failed or retried trial.

    Tune's own per-trial tables are hidden (:func:`dataselect.console.readable_tune_output`);
    these lines say the same in one line each, and make a retry visible.
    """

    def __init__(self, total: int | None = None) -> None:
        self._log = logging.getLogger("dataselect.sweep")
        self._done = 0
        self._n = total

    def _total(self, trials: list[Any]) -> int:
        # Tune creates grid trials lazily (max_concurrent_trials): len(trials) lags.
        return max(self._n or 0, len(trials))

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._done += 1
        r = trial.last_result or {}
        acc = r.get("accuracy")
        what = f"accuracy {acc:.4f}" if isinstance(acc, (int, float)) else "no metrics"
        secs = r.get("time_total_s")
        took = f" in {secs:.0f} s" if isinstance(secs, (int, float)) else ""
        self._log.info("trial %s done: %s%s (%d/%d)", trial, what, took, self._done, self._total(trials))

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._done += 1
        err = (trial.last_result or {}).get("trial_error") or "worker lost; retries used up"
        self._log.warning("trial %s failed: %s (%d/%d; see results.csv)", trial, err, self._done,
                          self._total(trials))

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        n = trial.run_metadata.num_failures
        self._log.warning("trial %s lost its worker (failure %d of at most %s retries); restarting it",
                          trial, n, trial.max_failures)
