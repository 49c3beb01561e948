"""Console hygiene: Ray's native log lines and raylet notices, through standard streams only."""

from __future__ import annotations

import io
import logging
import os
import signal
import time

import pytest

from dataselect.sweep import console

BENIGN = (b"[2026-12-01 00:00:22,652 E 1885 1885] core_worker.cc:2465: Actor with class name: "
          b"'MapWorker(MapBatches(EmbedBatch))' has constructor arguments in the object store and "
          b"max_restarts > 0. If the arguments go out of scope the actor restart will fail.\n")
WARN = b"[2026-12-01 00:00:23,001 W 1885 1902] gcs_client.cc:12: slow GCS reply\n"
REAL = b"[2026-12-01 00:00:24,500 E 1885 1885] core_worker.cc:99: Failed to pin object\n"


def _through_filter(capfd, writes: list[bytes]) -> tuple[str, str]:
    sink = io.StringIO()
    with console.native_lines_to(sink):
        for w in writes:
            os.write(2, w)
            time.sleep(0.02)  # let the pump see each write as its own chunk
    return capfd.readouterr().err, sink.getvalue()


@pytest.mark.timing
def test_native_lines_leave_the_console_but_bars_and_real_errors_stay(capfd):
    capfd.readouterr()
    bar = [b"\rembedding shards:  11%|# | 1/9 [00:25<03:24, 25.57s/shard]",
           b"\rembedding shards:  22%|## | 2/9 [00:42<02:25, 20.75s/shard]"]
    # A native line cut into three writes, one starting mid-bar (as seen on the console).
    writes = [bar[0], BENIGN[:5], BENIGN[5:40], BENIGN[40:], bar[1], WARN, REAL, b"done\n"]
    err, moved = _through_filter(capfd, writes)
    assert err == (bar[0] + bar[1] + REAL + b"done\n").decode()
    assert moved == (BENIGN + WARN).decode()


@pytest.mark.timing
def test_a_bracket_that_cannot_start_a_native_line_is_not_held_back(capfd):
    capfd.readouterr()
    sink = io.StringIO()
    with console.native_lines_to(sink):
        os.write(2, b"\rbar [00:01<00:09]")
        deadline = time.time() + 2
        seen = ""
        while time.time() < deadline and "[00:01" not in seen:
            time.sleep(0.05)
            seen += capfd.readouterr().err
    assert "[00:01<00:09]" in seen  # shown while the block is still open
    assert sink.getvalue() == ""


def _notice(pid: str = "raylet") -> dict:
    text = ("A worker died or was killed while executing a task by an unexpected system error. "
            "To troubleshoot the problem, check the logs for the dead worker. Lease ID: 00ab "
            "Worker exit type: SYSTEM_ERROR Worker exit detail: Worker unexpectedly exits with a "
            "connection error code 2. End of file.")
    return {"lines": [text], "pid": pid, "is_err": False}


def test_raylet_notice_is_one_console_line_and_counted(tmp_path, caplog, capsys):
    # Printed by Ray's own driver function (the format of the pinned Ray), which stays untouched.
    from ray._private import worker as ray_worker

    original = ray_worker.print_to_stdstream
    before = len(console.WORKER_DEATHS)
    caplog.set_level(logging.INFO)
    full: list[logging.LogRecord] = []
    keep = logging.Handler()
    keep.emit = full.append  # "ray" loggers do not propagate to caplog's root handler
    logging.getLogger("ray.raylet").addHandler(keep)
    try:
        with console.raylet_notices(tmp_path / "logs" / "ray"):
            assert ray_worker.print_to_stdstream is original  # no Ray function replaced
            ray_worker.print_to_stdstream(_notice(), ignore_prefix=False)
    finally:
        logging.getLogger("ray.raylet").removeHandler(keep)
    assert len(console.WORKER_DEATHS) == before + 1
    ours = [r for r in caplog.records if r.name == "dataselect.sweep.console"]
    assert len(ours) == 1
    msg = ours[0].getMessage()
    assert msg.startswith("ray: A worker died or was killed while executing a task by an unexpected "
                          "system error (SYSTEM_ERROR)")
    assert str(tmp_path / "logs" / "ray") in msg and "Lease ID" not in msg
    assert len(full) == 1 and "Lease ID: 00ab" in full[0].getMessage()  # whole notice for the log file
    assert capsys.readouterr().out == ""  # Ray's own print did not happen


def test_other_output_passes_the_raylet_filter_unchanged(tmp_path, caplog, capsys):
    """Only raylet notices leave stdout; a remote node's notice is caught too."""
    caplog.set_level(logging.INFO)
    with console.raylet_notices(tmp_path / "logs" / "ray"):
        print("report: runs/x/report/report.md")
        print("(raylet, ip=10.0.0.2) A worker died or was killed while executing a task. More.")
        print("")
        print("a line (raylet) inside is not a notice")
    assert capsys.readouterr().out == ("report: runs/x/report/report.md\n\n"
                                       "a line (raylet) inside is not a notice\n")
    ours = [r.getMessage() for r in caplog.records if r.name == "dataselect.sweep.console"]
    assert len(ours) == 1 and ours[0].startswith("ray: A worker died or was killed while executing a task;")


def test_stage_says_it_completed_in_spite_of_a_worker_death(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with console.stage("features", tmp_path, tmp_path / "sweep.log"):
        console.WORKER_DEATHS.append("A worker died")
    lines = [r.getMessage() for r in caplog.records if r.name == "dataselect.sweep.console"]
    assert lines == [f"features stage completed although 1 Ray worker(s) died: Ray re-ran their work; "
                     f"worker logs in {tmp_path / 'logs' / 'ray'}"]
    caplog.clear()
    with console.stage("select", tmp_path, tmp_path / "sweep.log"):
        pass
    assert not [r for r in caplog.records if r.name == "dataselect.sweep.console"]


@pytest.mark.timing
@pytest.mark.timeout(120)
def test_a_real_worker_kill_inside_a_stage_is_said_once(tmp_path, caplog, ray_local):
    """A task's worker is SIGKILLed on its first attempt; Ray retries it; the stage says so."""
    import ray

    marker = tmp_path / "killed-once"

    @ray.remote(max_retries=2)
    def flaky(path: str) -> int:
        if not os.path.exists(path):
            open(path, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return 7

    caplog.set_level(logging.INFO)
    before = len(console.WORKER_DEATHS)
    with (console.raylet_notices(tmp_path / "logs" / "ray"),
          console.stage("select", tmp_path, tmp_path / "sweep.log")):
        assert ray.get(flaky.remote(str(marker))) == 7
        deadline = time.time() + 30  # the raylet's notice reaches the driver asynchronously
        while len(console.WORKER_DEATHS) == before and time.time() < deadline:
            time.sleep(0.2)
    lines = [r.getMessage() for r in caplog.records if r.name == "dataselect.sweep.console"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("ray: A worker died")
    assert lines[1].startswith("select stage completed although 1 Ray worker(s) died")


def test_closing_lines_print_the_headline_then_where_to_look(tmp_path):
    from dataselect.sweep.console import closing_lines

    rep = tmp_path / "s" / "report"
    rep.mkdir(parents=True)
    (rep / "headline.txt").write_text("- At 5 %, **no selector beats random**.\n\n  rows\n")
    lines = closing_lines(rep / "report.md")
    assert lines[0].startswith("- At 5 %, **no selector beats random**.") and "  rows" in lines[0]
    assert lines[-2:] == [f"report: {rep / 'report.md'}",
                          f"TensorBoard: tensorboard --logdir {tmp_path / 's' / 'tensorboard'}"]
    (rep / "headline.txt").unlink()  # a report from before headlines existed: paths only
    assert closing_lines(rep / "report.md")[0].startswith("report: ")


def test_tunes_list_of_unstarted_trials_on_resume_stays_off_the_console():
    import logging

    from dataselect.sweep.console import _ConsoleFilter

    def rec(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, None, None)

    f = _ConsoleFilter()
    assert not f.filter(rec("ray.tune.analysis.experiment_analysis",
                            "Failed to fetch metrics for 192 trial(s):\n- a: FileNotFoundError(...)"))
    assert f.filter(rec("ray.tune.tune", "Trial a: retrying (1 of 2)"))
