"""Lose a node mid-sweep (SIGKILL every Ray process of the worker node): every trial still finishes.

Its own module, so its own two-node cluster (``conftest.cluster`` is module
scoped): the kill leaves a one-node cluster no other test should inherit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import yaml
from two_node_ray import REPO_ROOT, LocalCluster, _our_pids

pytestmark = [pytest.mark.slow, pytest.mark.timing]

SST2 = REPO_ROOT.parent / "shared" / "data" / "sst2"


def _study(output_dir) -> dict:
    # Fine-tune trials (model load + a few steps: seconds) so one can be caught
    # running on the worker node; 'random' reads no features.
    return {
        "name": "loss",
        "output_dir": str(output_dir),
        "dataset": {"source": str(SST2), "pool_size": 40, "eval_size": 40},
        "features": {"encoder": "minilm", "perplexity_model": None, "text_metrics": False},
        "selectors": [{"name": "random"}],
        "grid": {"fractions": [0.5], "seeds": [0, 1, 2], "full_reference": True},
        "trainer": {"mode": "finetune", "model": "minilm", "epochs": 3.0, "batch_size": 8,
                    "max_length": 32, "eval_batch_size": 64},
        "ray": {"cpus_per_trial": 1, "max_trial_retries": 2},
    }


def _attempts(study) -> dict[str, list[dict]]:
    out = {}
    for p in (study / "trials").glob("*/attempts.jsonl"):
        with contextlib.suppress(ValueError):
            out[p.parent.name] = [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]
    return out


def test_losing_the_worker_node_mid_sweep_retries_its_trials(cluster: LocalCluster) -> None:
    shared = cluster.temp_dir / "shared"
    cfg_path = cluster.temp_dir / "loss.yaml"
    cfg_path.write_text(yaml.safe_dump(_study(shared)))
    study = shared / "loss"
    log = cluster.temp_dir / "loss.log"
    worker_pgid = cluster.pgids[1]  # head first, then the worker node (two_node_cluster)
    proc = subprocess.Popen([sys.executable, "-m", "dataselect.sweep", str(cfg_path), "--address",
                             cluster.address], env=cluster.env, cwd=REPO_ROOT, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    victim = None
    try:
        deadline = time.monotonic() + 300
        while victim is None and time.monotonic() < deadline and proc.poll() is None:
            on_worker = _our_pids([worker_pgid])
            for trial, tries in _attempts(study).items():
                if tries[-1]["pid"] in on_worker and not (study / "trials" / trial / "result.json").exists():
                    for pid in on_worker:  # raylet, its workers, the node's agents: the whole node
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.kill(pid, signal.SIGKILL)
                    victim = trial
                    break
            time.sleep(0.05)
        rc = proc.wait(timeout=420)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    tail = textwrap.indent(text[-4000:], "  ")
    assert victim, f"no trial was caught on the worker node:\n{tail}"
    assert not _our_pids([worker_pgid]), "the worker node is still alive"
    assert rc == 0, tail
    df = pd.read_csv(study / "report" / "results.csv")
    assert len(df) == 6 == df["trial"].nunique(), df[["trial", "status"]]
    assert (df["status"] == "TERMINATED").all(), df[["trial", "status", "error"]]
    tries = _attempts(study)
    assert len(tries[victim]) >= 2, tries
    assert f"trial {victim} lost its worker" in text, tail
