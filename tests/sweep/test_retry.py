"""Lost trials are retried, a trial's own error is not: real kill -9 of a trial's worker."""

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

from dataselect.sweep.trial import TrialError, run_trial_reported, trial_name_for

from .conftest import short_tmp, study_raw

REPO = Path(__file__).resolve().parents[2]


def _attempts(study: Path) -> dict[str, list[dict]]:
    return {p.parent.name: [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]
            for p in (study / "trials").glob("*/attempts.jsonl")}


@pytest.fixture
def ray_dir():
    path = short_tmp()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timing
@pytest.mark.slow
def test_kill_9_of_a_trial_worker_is_retried(sst2_dir, tmp_path, ray_dir):
    raw = study_raw(sst2_dir, tmp_path / "out", "retry", ray_tmp=ray_dir,
                    selectors=[{"name": "random"}],
                    grid={"fractions": [0.5], "seeds": [0, 1], "full_reference": True},
                    # Fine-tuning (model load + a few steps) lasts long enough to be killed
                    # part-way; 'random' reads no features, so no feature stage.
                    trainer={"mode": "finetune", "model": "minilm", "epochs": 3.0, "batch_size": 8,
                             "max_length": 32, "eval_batch_size": 64})
    raw["dataset"] = {**raw["dataset"], "pool_size": 40, "eval_size": 40}
    raw["ray"] = {**raw["ray"], "max_concurrent_trials": 1, "cpus_per_trial": 1}
    cfg_path = tmp_path / "retry.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    study = tmp_path / "out" / "retry"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    log = tmp_path / "sweep.log"
    proc = subprocess.Popen([sys.executable, "-m", "dataselect.sweep", str(cfg_path)], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    killed = None
    try:
        deadline = time.monotonic() + 300
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            for trial, tries in _attempts(study).items():
                if not (study / "trials" / trial / "result.json").exists():
                    # attempts.jsonl names the worker process training this trial.
                    os.kill(tries[-1]["pid"], signal.SIGKILL)
                    killed = trial
                    break
            time.sleep(0.02)
        rc = proc.wait(timeout=400)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert killed, f"no trial was caught mid-training; log:\n{text[-3000:]}"
    assert rc == 0, text[-3000:]
    df = pd.read_csv(study / "report" / "results.csv")
    assert sorted(df["trial"]) == sorted([trial_name_for("random", 0.5, s) for s in (0, 1)]
                                         + [trial_name_for("full", 1.0, s) for s in (0, 1)])
    assert (df["status"] == "TERMINATED").all(), df[["trial", "status", "error"]]
    tries = _attempts(study)
    assert len(tries[killed]) == 2 and tries[killed][0]["pid"] != tries[killed][1]["pid"]
    assert all(len(t) == 1 for name, t in tries.items() if name != killed)
    assert not (study / "sweep.lock").exists()
    # Console: where the logs are comes first; worker chatter stays in the logs.
    assert text.splitlines()[0].split("INFO ")[-1].startswith("dataselect.sweep.run: logs: "), text[:500]
    assert "LOAD REPORT" not in text and "(run_trial" not in text
    assert f"trial {killed} lost its worker (failure 1 of at most 2 retries)" in text
    assert text.count(" done: accuracy ") == 4 and "(4/4)" in text
    assert list((study / "logs").glob("sweep-*.log")) and (study / "logs" / "ray").is_symlink()


def test_own_error_is_reported_then_raised_without_retries(tmp_path, monkeypatch):
    from dataselect.sweep.callbacks import NoRetryOnOwnError

    reported = []
    monkeypatch.setattr("ray.tune.report", lambda metrics, **kw: reported.append(metrics))
    cell = {"selector": "broken", "name": "perplexity", "params": {}, "fraction": 0.1}
    sel = {"broken|0.1|0": {"path": None, "seconds": 0.0, "budget": 4,
                            "error": "Perplexity needs features ['perplexity']"}}
    with pytest.raises(TrialError, match="selection failed"):
        run_trial_reported({"cell": cell, "seed": 0}, study_dir=str(tmp_path), trainer={}, num_labels=2,
                           selections=sel, inputs_key="k")
    assert len(reported) == 1 and reported[0]["trial_error"].startswith("RuntimeError: selection failed")
    trial = type("T", (), {"max_failures": 2})()
    NoRetryOnOwnError().on_trial_result(0, [], trial, reported[0])
    assert trial.max_failures == 0
    NoRetryOnOwnError().on_trial_result(0, [], trial := type("T", (), {"max_failures": 2})(), {"accuracy": 1})
    assert trial.max_failures == 2
    trial = tmp_path / "trials" / trial_name_for("broken", 0.1, 0)
    assert "Traceback" in (trial / "error.txt").read_text()
    assert len((trial / "attempts.jsonl").read_text().splitlines()) == 1


def test_route_logs_keeps_third_party_chatter_off_the_console(tmp_path, capsys):
    import logging

    from dataselect.sweep.console import route_logs

    console = logging.StreamHandler()  # stands in for the CLI's console handler
    root = logging.getLogger()
    root.addHandler(console)
    try:
        with route_logs(tmp_path) as path:
            logging.getLogger("faiss.loader").warning("Could not load library with AVX512")
            logging.getLogger("ray.data").info("Total Progress: 0/?")
            logging.getLogger("transformers.modeling_utils").warning("LOAD REPORT")
            logging.getLogger("dataselect.sweep").info("stage line")
            logging.getLogger("ray.tune").warning("Trial x: retrying")
            logging.getLogger("some.lib").error("a real failure")
    finally:
        root.removeHandler(console)
    err = capsys.readouterr().err
    # (Ray's own "ray" handler writes to the stderr it saw at import, outside capsys.)
    assert "stage line" in err and "a real failure" in err
    for noise in ("AVX512", "Total Progress", "LOAD REPORT"):
        assert noise not in err
    text = path.read_text()
    assert path.parent == tmp_path / "logs"
    for line in ("AVX512", "Total Progress", "LOAD REPORT", "stage line", "a real failure"):
        assert line in text
    assert not console.filters  # put back on exit


def test_worker_crash_in_a_stage_is_one_line_naming_the_logs(sst2_dir, tmp_path, ray_tmp, ray_local,
                                                             monkeypatch):
    import ray.exceptions

    from dataselect.core.errors import StageError, error_lines
    from dataselect.sweep.run import run_sweep

    from .conftest import make_cfg

    def crash(cfg, ds):
        raise ray.exceptions.WorkerCrashedError()

    monkeypatch.setattr("dataselect.sweep.run.stage_features", crash)
    cfg = make_cfg(study_raw(sst2_dir, tmp_path, "crash", ray_tmp=ray_tmp))
    with pytest.raises(StageError) as info:
        run_sweep(cfg)
    lines = error_lines(info.value)
    assert len(lines) == 1 and info.value.exit_code == 1
    assert lines[0].startswith("error: features stage: a Ray worker or node died (WorkerCrashedError")
    assert str(cfg.study_dir / "logs" / "ray") in lines[0]
    logfile = next((cfg.study_dir / "logs").glob("sweep-*.log"))
    assert "Traceback" in logfile.read_text() and str(logfile) in lines[0]
    assert not (cfg.study_dir / "sweep.lock").exists()

    def bug(cfg, ds):
        raise ValueError("a bug in the stage")

    # A bug is one line too, named as ours; its traceback (cause chain included) is in the log file.
    monkeypatch.setattr("dataselect.sweep.run.stage_features", bug)
    with pytest.raises(StageError) as info:
        run_sweep(cfg)
    lines = error_lines(info.value)
    assert len(lines) == 1 and info.value.exit_code == 1
    assert lines[0].startswith("error: sweep failed: ValueError: a bug in the stage (an error in dataselect")
    assert isinstance(info.value.__cause__, ValueError)
    text = Path(lines[0].split("traceback in ")[1].split(";")[0]).read_text()
    assert "Traceback" in text and "ValueError: a bug in the stage" in text and "in bug" in text
