"""One sweep per study folder: real second processes, a dead holder taken over, leases across hosts."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import dataselect.sweep.lock as lock_mod
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


def test_a_lock_from_before_leases_on_another_host_is_never_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": time.time()}))
    old = time.time() - 10_000
    os.utime(tmp_path / LOCK_NAME, (old, old))  # no lease in it: its age says nothing
    with pytest.raises(LockedError, match=f"pid 1 on elsewhere.*delete {tmp_path / LOCK_NAME}"):
        StudyLock(tmp_path).acquire()


def _foreign(study: Path, age_s: float, lease_s: float = 120.0) -> dict:
    """A lock of a sweep on another host (a KubeRay head pod gone) whose last heartbeat was ``age_s`` ago."""
    info = {"pid": 77, "host": "dataselect-grid-head-x7k2p", "started": time.time() - 1000,
            "token": "t0", "lease_s": lease_s}
    path = study / LOCK_NAME
    path.write_text(json.dumps(info))
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return info


def test_a_lock_from_another_host_is_taken_over_once_its_lease_ran_out(tmp_path, caplog):
    _foreign(tmp_path, age_s=30)
    with pytest.raises(LockedError, match=r"pid 77 on dataselect-grid-head-x7k2p.*last heartbeat 3\d s ago.*"
                                          r"rerun in (9\d|8\d) s"):
        StudyLock(tmp_path).acquire()
    _foreign(tmp_path, age_s=121)
    with caplog.at_level(logging.WARNING, logger="dataselect.sweep.lock"), StudyLock(tmp_path) as lock:
        held = json.loads(lock.path.read_text())
        assert held["pid"] == os.getpid() and held["token"] == lock.info["token"]
    assert any("taking over" in m and "past its 120 s lease" in m for m in caplog.messages)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no takeover file, temp or stale copy left


def test_recycled_pid_counts_as_gone(tmp_path, caplog):
    # Our own pid, but the lock claims a start long before this process began.
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                  "started": 1_000_000.0}))
    with caplog.at_level(logging.WARNING, logger="dataselect.sweep.lock"), StudyLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["started"] == lock.info["started"] != 1_000_000.0
    assert any("taking over" in m and f"pid {os.getpid()}" in m for m in caplog.messages)
    assert not (tmp_path / LOCK_NAME).exists()


def test_the_heartbeat_keeps_a_lock_alive_and_notices_a_takeover(tmp_path, caplog):
    lock = StudyLock(tmp_path, lease_s=0.6).acquire()  # beats every 0.1 s
    try:
        back = time.time() - 3600
        os.utime(lock.path, (back, back))
        time.sleep(0.4)
        assert lock.path.stat().st_mtime > time.time() - 5  # touched again
        monkey = {**lock.info, "pid": 1, "host": "elsewhere", "token": "other"}
        lock.path.write_text(json.dumps(monkey))
        with caplog.at_level(logging.ERROR, logger="dataselect.sweep.lock"):
            assert lock.beat() is False
        assert lock.lost and any("now held by pid 1 on elsewhere" in m for m in caplog.messages)
    finally:
        lock.release()
    assert json.loads(lock.path.read_text())["token"] == "other"  # the new holder's lock is left alone


def test_the_temp_file_does_not_leak_when_writing_it_fails(tmp_path, monkeypatch):
    real = Path.write_text

    def full_disk(self, data, *a, **k):
        if self.name.endswith(".tmp"):
            real(self, data[:5], *a, **k)
            raise OSError(28, "No space left on device")
        return real(self, data, *a, **k)

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError, match="No space"):
        StudyLock(tmp_path).acquire()
    assert list(tmp_path.iterdir()) == []


def _race(study: str, start: float, out) -> None:  # a separate process
    lock_mod.socket.gethostname = lambda: f"taker-{os.getpid()}"  # each "pod" its own host
    time.sleep(max(0.0, start - time.time()))
    try:
        lock = StudyLock(study).acquire()
    except LockedError:
        out.put("refused")
        return
    out.put("won")
    time.sleep(1.5)  # hold it while the others try
    lock.release()


@pytest.mark.parametrize("round_", range(3))
def test_of_sweeps_taking_over_one_stale_lock_at_once_exactly_one_wins(tmp_path, round_):
    _foreign(tmp_path, age_s=500)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    start = time.time() + 0.5
    procs = [ctx.Process(target=_race, args=(str(tmp_path), start, out)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    got = sorted(out.get(timeout=5) for _ in procs)
    assert got == ["refused"] * 5 + ["won"], got


def test_release_leaves_a_foreign_lock_alone(tmp_path):
    lock = StudyLock(tmp_path).acquire()
    other = {"pid": 1, "host": "elsewhere", "started": 1.0}
    lock.path.write_text(json.dumps(other))
    lock.release()
    assert json.loads(lock.path.read_text()) == other
