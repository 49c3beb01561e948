"""Kill a sweep process mid-way (SIGKILL) and resume it: finished trials are not retrained."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import short_tmp, study_raw

pytestmark = [pytest.mark.slow, pytest.mark.timing]


def _finished(study: Path) -> set[str]:
    # A trial writes trials/<name>/result.json after training, just before tune.report.
    return {p.parent.name for p in (study / "trials").glob("*/result.json")}


def _attempts(study: Path, trial: str) -> int:
    return len((study / "trials" / trial / "attempts.jsonl").read_text().splitlines())


def _run(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    # Own session: the kill below takes the driver and every Ray process it started.
    return subprocess.Popen([sys.executable, "-m", "dataselect.sweep", *args], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.fixture
def ray_dir():
    path = short_tmp()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_sigkill_then_resume(sst2_dir, tmp_path, ray_dir):
    raw = study_raw(sst2_dir, tmp_path / "out", "resume", ray_tmp=ray_dir,
                    selectors=[{"name": "random"}, {"name": "kcenter"}],
                    grid={"fractions": [0.05, 0.1, 0.2], "seeds": [0], "full_reference": True})
    # One trial at a time and an MLP head: slow enough to stop the sweep part-way.
    raw["ray"] = {**raw["ray"], "max_concurrent_trials": 1}
    raw["trainer"] = {**raw["trainer"], "probe": "mlp"}
    # Two actors: the features go through Ray Data (one actor on one node
    # runs in process), whose log lines this test follows to the sweep log.
    raw["features"] = {**raw.get("features", {}), "num_actors": 2}
    cfg_path = tmp_path / "resume.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    study = tmp_path / "out" / "resume"
    n_trials = 2 * 3 + 1

    first = _run([str(cfg_path)], tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 300
        while not _finished(study) and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.1)
    finally:
        _kill_group(first)
    done_before = _finished(study)
    log_first = (tmp_path / "first.log").read_text()
    assert done_before, f"no trial finished before the kill; log:\n{log_first[-3000:]}"
    assert len(done_before) < n_trials, "the sweep finished before it could be killed"
    assert not (study / "report" / "report.md").exists()

    second = _run([str(cfg_path), "--resume"], tmp_path / "second.log")
    try:
        rc = second.wait(timeout=400)
    finally:
        _kill_group(second)
    log_second = (tmp_path / "second.log").read_text()
    assert rc == 0, log_second[-3000:]
    assert "resuming Tune experiment" in log_second
    # Ray Data's execution plans and progress log lines go to <study>/logs, not the console.
    for noise in ("logging_progress.py", "streaming_executor.py", "faiss.loader", "authentication_token"):
        assert noise not in log_first + log_second, noise
    assert "logging_progress.py" in "".join(p.read_text() for p in (study / "logs").glob("sweep-*.log"))

    df = pd.read_csv(study / "report" / "results.csv")
    assert len(df) == n_trials and (df["status"] == "TERMINATED").all(), df[["trial", "status", "error"]]
    for trial in done_before:
        assert _attempts(study, trial) == 1, f"{trial} was trained again after resume"
    tries = {t: _attempts(study, t) for t in df["trial"]}
    assert min(tries.values()) == 1, tries
    # One trial at a time: only the one in flight when the driver died trains twice.
    assert sum(n - 1 for n in tries.values()) <= 1, tries
    # The Tune experiment was restored in place, not started afresh beside the old one.
    assert not list((study / "tune").glob("resume.prev-*"))
    meta = json.loads((study / "study.json").read_text())
    assert meta["n_trials"] == n_trials
