"""Tune callbacks of the sweep (imported only where Ray Tune runs)."""

from __future__ import annotations

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
