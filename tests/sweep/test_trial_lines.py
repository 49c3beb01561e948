"""The sweep's console callback: trial lines with time left, a status table once per change."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from dataselect.sweep.callbacks import TrialLines


class _Trial(SimpleNamespace):
    def __str__(self) -> str:
        return self.name


def _trial(name: str, acc: float | None = None) -> _Trial:
    res = {} if acc is None else {"accuracy": acc, "macro_f1": acc - 0.01, "n_train": 24,
                                  "time_total_s": 10.0}
    return _Trial(name=name, last_result=res, run_metadata=SimpleNamespace(num_failures=0), max_failures=2)


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dataselect.sweep"]


def test_eta_is_mean_wall_time_times_trials_left_over_slots(caplog):
    caplog.set_level(logging.INFO)
    clock = _Clock()
    cb = TrialLines(6, slots=2, clock=clock)
    a, b = _trial("a_f0.1_s0", 0.8), _trial("b_f0.1_s0", 0.7)
    cb.on_trial_start(0, [], a)
    cb.on_trial_start(0, [], b)
    clock.t = 60.0
    cb.on_trial_complete(0, [], a)   # 60 s
    clock.t = 100.0
    cb.on_trial_complete(0, [], b)   # 100 s: mean 80 s, 4 left on 2 slots -> 160 s
    assert cb.eta_seconds(6) == pytest.approx(160.0)
    lines = _messages(caplog)
    assert lines[0] == "trial a_f0.1_s0 done: accuracy 0.8000 in 10 s (1/6, about 3 min left)"
    assert lines[1] == "trial b_f0.1_s0 done: accuracy 0.7000 in 10 s (2/6, about 3 min left)"


def test_reused_trials_do_not_shrink_the_time_left(caplog):
    caplog.set_level(logging.INFO)
    clock = _Clock()
    cb = TrialLines(4, slots=1, clock=clock)
    old, new = _trial("a_f0.1_s0", 0.8), _trial("b_f0.1_s0", 0.7)
    old.last_result["reused"] = True
    cb.on_trial_start(0, [], old)
    cb.on_trial_start(0, [], new)
    clock.t = 1.0
    cb.on_trial_complete(0, [], old)   # a reused result, back in 1 s
    assert cb.eta_seconds(4) is None
    clock.t = 90.0
    cb.on_trial_complete(0, [], new)   # trained: 90 s, 2 left on 1 slot
    assert cb.eta_seconds(4) == pytest.approx(180.0)
    assert _messages(caplog)[0] == "trial a_f0.1_s0 done: accuracy 0.8000, reused (trained earlier) (1/4)"


def test_table_is_printed_once_per_change_and_at_the_end(caplog):
    caplog.set_level(logging.INFO)
    clock = _Clock()
    cb = TrialLines(3, slots=1, table_every_s=120, clock=clock)
    t1, t2 = _trial("x_f0.1_s0", 0.9), _trial("x_f0.1_s1")
    cb.on_trial_start(0, [], t1)
    clock.t = 30.0
    cb.on_step_end(0, [])          # changed, but less than 120 s since the last table
    assert not [m for m in _messages(caplog) if m.startswith("trials:")]
    clock.t = 130.0
    cb.on_step_end(0, [])
    cb.on_step_end(0, [])          # nothing changed since: no repeat
    clock.t = 400.0
    cb.on_step_end(0, [])
    tables = [m for m in _messages(caplog) if m.startswith("trials:")]
    assert len(tables) == 1 and "x_f0.1_s0  RUNNING" in tables[0]
    assert tables[0].splitlines()[0] == "trials: 1 running, 0 done, 0 failed, 2 pending (0/3)"
    cb.on_trial_complete(0, [], t1)
    t2.last_result = {"trial_error": "ValueError: no rows"}
    cb.on_trial_error(0, [], t2)
    cb.on_experiment_end([])
    tables = [m for m in _messages(caplog) if m.startswith("trials:")]
    assert len(tables) == 2
    end = tables[1].splitlines()
    assert end[0] == "trials: 0 running, 1 done, 1 failed, 1 pending (2/3, about 7 min left)"
    assert any(ln.split()[:3] == ["x_f0.1_s0", "done", "0.9000"] for ln in end)
    assert any(ln.split()[:2] == ["x_f0.1_s1", "ERROR"] for ln in end)
    assert "trial x_f0.1_s1 failed: ValueError: no rows (2/3" in "\n".join(_messages(caplog))


def test_the_final_table_is_printed_once(caplog):
    """Tune steps once more after the last trial ends, then ends the experiment: one table, not two."""
    caplog.set_level(logging.INFO)
    clock = _Clock()
    cb = TrialLines(2, slots=1, table_every_s=120, clock=clock)
    a, b = _trial("x_f0.1_s0", 0.9), _trial("x_f0.1_s1", 0.8)
    cb.on_trial_start(0, [], a)
    cb.on_trial_start(0, [], b)
    clock.t = 300.0
    cb.on_trial_complete(0, [], a)
    cb.on_step_end(0, [])           # one trial still running: the table is due
    clock.t = 600.0
    cb.on_trial_complete(0, [], b)
    cb.on_step_end(0, [])           # every trial ended: left to the experiment's end
    cb.on_experiment_end([])
    tables = [m for m in _messages(caplog) if m.startswith("trials:")]
    assert [t.splitlines()[0] for t in tables] == [
        "trials: 1 running, 1 done, 0 failed, 0 pending (1/2, about 5 min left)",
        "trials: 0 running, 2 done, 0 failed, 0 pending (2/2)"]
