"""The sweep timeline's overhead arithmetic and the script that prints it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dataselect.sweep.timeline import TIMELINE_FILE, Timeline, overhead, trial_times

REPO = Path(__file__).resolve().parents[2]


def _data():
    trials = trial_times([
        {"trial_id": "a", "time_total_s": 10.0, "train_seconds": 7.0, "eval_seconds": 1.0, "timestamp": 5},
        {"trial_id": "b", "time_total_s": 12.0, "train_seconds": 8.0, "eval_seconds": 2.0},
        {"trial_id": "c", "time_total_s": 1.0, "trial_error": "ValueError: x"},
    ])
    return {"total_s": 100.0, "slots": 2, "trials": trials,
            "stages": {"ray_start": 4.0, "features": 40.0, "select": 20.0, "tune": 14.0, "report": 3.0}}


def test_overhead_arithmetic():
    o = overhead(_data())
    assert o["trial_work"] == 18.0 and o["trial_wall"] == 23.0 and o["trial_setup"] == 5.0
    assert o["tune_gaps"] == pytest.approx(14.0 - 23.0 / 2)
    assert o["overhead"] == pytest.approx(100.0 - 40.0 - 20.0 - 18.0 / 2)
    assert o["overhead_frac"] == pytest.approx(0.31)
    assert o["unstaged"] == pytest.approx(100.0 - 81.0)
    assert [t["error"] for t in _data()["trials"]] == [False, False, True]


def test_a_reused_trial_counts_its_wall_but_not_the_work_an_earlier_sweep_did():
    # A reused result carries the seconds its first run spent (the cost report
    # needs them); this sweep only spent the wall of looking it up.
    fresh = trial_times([{"trial_id": "a", "time_total_s": 10.0, "train_seconds": 7.0, "eval_seconds": 1.0}])
    reused = trial_times([{"trial_id": "b", "time_total_s": 0.5, "train_seconds": 70.0, "eval_seconds": 9.0,
                           "reused": True}])
    o = overhead({"total_s": 20.0, "slots": 1, "trials": fresh + reused, "stages": {"tune": 11.0}})
    assert reused[0]["reused"] and not fresh[0]["reused"] and reused[0]["work_s"] == 0.0
    assert o["trial_work"] == 8.0 and o["trial_setup"] == pytest.approx(2.5) and o["overhead"] == 12.0


def test_timeline_stages_accumulate_and_write(tmp_path):
    tl = Timeline()
    for _ in range(2):
        with tl.stage("select"):
            pass
    with pytest.raises(RuntimeError), tl.stage("features"):
        raise RuntimeError("counted anyway")
    data = tl.write(tmp_path, _data()["trials"], slots=2)
    on_disk = json.loads((tmp_path / TIMELINE_FILE).read_text())
    assert set(on_disk["stages"]) == {"select", "features"} and on_disk["slots"] == 2
    assert on_disk["overhead"]["trial_work"] == data["overhead"]["trial_work"] == 18.0


def test_script_prints_the_table(tmp_path):
    (tmp_path / TIMELINE_FILE).write_text(json.dumps(_data()))
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_sweep_overhead.py"), str(tmp_path),
                          "--json", str(tmp_path / "o.json")],
                         capture_output=True, text=True, check=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}).stdout
    assert "| Ray start-up (`ray.init`) | 4.0 | 4.0 |" in out
    assert "HEADLINE: overhead 31.0 s = 31.0 % of 100.0 s wall" in out
    assert json.loads((tmp_path / "o.json").read_text())["overhead"] == pytest.approx(31.0)
    missing = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_sweep_overhead.py"),
                              str(tmp_path / "nope")], capture_output=True, text=True, cwd=REPO,
                             env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert missing.returncode == 2 and "timeline.json not found" in missing.stderr
