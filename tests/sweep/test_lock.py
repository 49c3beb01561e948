"""One sweep per study folder: real second processes, a dead holder taken over."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dataselect.sweep.lock import LOCK_NAME, LockedError, StudyLock

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}

_HOLD = """
import sys, time
from dataselect.sweep.lock import StudyLock
lock = StudyLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def _holder(study: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(study)], stdout=subprocess.PIPE, text=True,
                            env=ENV)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _config(tmp_path: Path, sst2_dir: Path) -> Path:
    raw = {"name": "locked", "output_dir": str(tmp_path / "runs"),
           "dataset": {"source": str(sst2_dir), "pool_size": 40, "eval_size": 40},
           "features": {"encoder": "minilm", "perplexity_model": None, "text_metrics": False},
           "selectors": [{"name": "random"}], "grid": {"fractions": [0.5], "seeds": [0]},
           "trainer": {"mode": "probe", "model": "minilm"}}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_second_sweep_refuses_naming_the_holder(tmp_path, sst2_dir):
    study = tmp_path / "runs" / "locked"
    holder = _holder(study)
    try:
        r = subprocess.run([sys.executable, "-m", "dataselect.sweep", str(_config(tmp_path, sst2_dir))],
                           capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=120)
    finally:
        holder.kill()
        holder.wait()
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2, r.stderr
    assert len(errors) == 1 and "Traceback" not in r.stderr
    assert f"pid {holder.pid} on {socket.gethostname()}" in errors[0]
    assert str(study / LOCK_NAME) in errors[0]
    assert sorted(p.name for p in study.iterdir()) == [LOCK_NAME]  # the refused sweep wrote nothing


def test_lock_of_a_killed_sweep_is_taken_over_with_a_warning(tmp_path, caplog):
    study = tmp_path / "study"
    holder = _holder(study)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert json.loads((study / LOCK_NAME).read_text())["pid"] == holder.pid  # left behind
    with caplog.at_level(logging.WARNING, logger="dataselect.sweep.lock"), StudyLock(study) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert any("taking over" in r.message and str(holder.pid) in r.message for r in caplog.records)
    assert not (study / LOCK_NAME).exists()  # released on exit
    assert [p.name for p in study.iterdir()] == []


def test_lock_from_another_host_is_never_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": time.time()}))
    with pytest.raises(LockedError, match="pid 1 on elsewhere"):
        StudyLock(tmp_path).acquire()


def test_recycled_pid_counts_as_gone(tmp_path):
    # Our own pid, but the lock claims a start long before this process began.
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                  "started": 1_000_000.0}))
    with StudyLock(tmp_path):
        pass


def test_release_leaves_a_foreign_lock_alone(tmp_path):
    lock = StudyLock(tmp_path).acquire()
    other = {"pid": 1, "host": "elsewhere", "started": 1.0}
    lock.path.write_text(json.dumps(other))
    lock.release()
    assert json.loads(lock.path.read_text()) == other
