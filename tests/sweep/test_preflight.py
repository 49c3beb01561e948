"""Preflight: data, models and output_dir refused in the driver, before Ray, writing nothing."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest
import yaml

from dataselect.core.errors import UserError
from dataselect.sweep import preflight as pf
from dataselect.sweep.preflight import (
    PreflightError,
    check_models,
    models_in_use,
    output_error,
    preflight,
)
from dataselect.sweep.study import parse_study

REPO = Path(__file__).resolve().parents[2]


def _raw(sst2_dir: Path, out: Path, **over) -> dict:
    raw = {
        "name": "pf",
        "output_dir": str(out),
        "dataset": {"source": str(sst2_dir), "pool_size": 40, "eval_size": 40},
        "features": {"encoder": "minilm", "perplexity_model": "standin:qwen3", "text_metrics": False},
        "selectors": [{"name": "random"}, {"name": "kcenter"}],
        "grid": {"fractions": [0.5], "seeds": [0]},
        "trainer": {"mode": "finetune", "model": "minilm"},
    }
    raw.update(over)
    return raw


def test_grid_yaml_offline_is_one_line_exit_2_fast_and_writes_nothing(sst2_dir, tmp_path):
    raw = yaml.safe_load((REPO / "experiments" / "grid.yaml").read_text())
    raw["output_dir"] = str(tmp_path / "runs")
    raw["dataset"]["source"] = str(sst2_dir)  # grid.yaml's ../shared/data/sst2, from any cwd
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    # An empty HF cache: the test must not pass because some model happens to be cached.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": str(REPO)}
    t0, cpu0 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([sys.executable, "-m", "dataselect.sweep", str(cfg)], capture_output=True,
                       text=True, env=env, cwd=tmp_path, timeout=60)
    took = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2, r.stderr
    assert len(errors) == 1, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    for field in ("features.encoder", "features.perplexity_model", "features.mlm_model", "trainer.model"):
        assert field in errors[0]
    assert "minilm" in errors[0] and "standin:qwen3" in errors[0]
    # <= 10 s is the target on an idle machine; CPU seconds are what the command
    # costs whatever else shares the cores (wall time on a loaded 2-core CI box is
    # ~2x). Most of it is importing torch/scipy for the selector registry.
    assert cpu < 10, f"preflight used {cpu:.1f} CPU seconds"
    assert took < 30, f"preflight took {took:.1f} s wall"
    assert not (tmp_path / "runs").exists()
    assert "ray" not in r.stderr.lower().replace("trainer", "")  # Ray never started


def test_offline_models_and_standins_resolve_without_the_hub(sst2_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = parse_study(_raw(sst2_dir, tmp_path / "runs"))
    resolved, problems = check_models(cfg)
    assert problems == []
    assert {(m.field, m.source) for m in resolved} == {
        ("features.encoder", "offline package"), ("features.perplexity_model", "standin"),
        ("trainer.model", "offline package")}
    ds = preflight(cfg)
    assert len(ds.train) == 40
    assert not (tmp_path / "runs").exists()


def test_models_in_use_follow_what_the_sweep_loads(sst2_dir, tmp_path):
    # Probe trainer: no trainer.model; random-only fine-tune: no feature models.
    probe = parse_study(_raw(sst2_dir, tmp_path, trainer={"mode": "probe", "model": "nowhere/x"}))
    assert "trainer.model" not in dict(models_in_use(probe))
    plain = parse_study(_raw(sst2_dir, tmp_path, selectors=[{"name": "random"}]))
    assert [f for f, _ in models_in_use(plain)] == ["trainer.model"]


def test_every_problem_is_its_own_line_naming_the_field(sst2_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    nocfg = tmp_path / "not-a-model"
    nocfg.mkdir()
    raw = _raw(sst2_dir, tmp_path / "runs",
               features={"encoder": str(nocfg), "perplexity_model": str(tmp_path / "missing"),
                         "text_metrics": False},
               trainer={"mode": "finetune", "model": "someorg/not-cached"})
    raw["dataset"]["label_names"] = ["negative"]  # labels go up to 1: a data error
    with pytest.raises(PreflightError) as info:
        preflight(parse_study(raw, check_paths=False))
    lines = str(info.value).splitlines()
    assert len(lines) == 4, lines
    assert lines[0].startswith("dataset.")
    assert lines[1].startswith("features.encoder:") and "no config.json" in lines[1]
    assert lines[2].startswith("features.perplexity_model:") and "does not exist" in lines[2]
    assert lines[3].startswith("trainer.model:") and "'minilm'" in lines[3]


def test_hub_consulted_once_for_uncached_models(sst2_dir, tmp_path, monkeypatch):
    calls = []
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr("dataselect.core.models.hub_reachable", lambda timeout=2.0: True)
    monkeypatch.setattr(pf, "_ask_hub_once", lambda ref: calls.append(ref) or "unreachable")
    raw = _raw(sst2_dir, tmp_path / "runs", features={"encoder": "org/a", "perplexity_model": "org/b",
                                                      "text_metrics": False},
               trainer={"mode": "finetune", "model": "org/c"})
    _, problems = check_models(parse_study(raw))
    assert calls == ["org/a"]
    assert len(problems) == 1 and "hub cannot be reached" in problems[0]
    assert all(f in problems[0] for f in ("features.encoder", "features.perplexity_model", "trainer.model"))


def test_read_only_output_dir(sst2_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    real = os.statvfs

    def ro(path):
        st = real(path)
        return namedtuple("st", ["f_flag"])(st.f_flag | os.ST_RDONLY)

    monkeypatch.setattr(pf.os, "statvfs", ro)
    with pytest.raises(PreflightError, match=r"^output_dir: .* read-only file system"):
        preflight(parse_study(_raw(sst2_dir, tmp_path / "runs")))
    assert not (tmp_path / "runs").exists()


def test_full_output_dir(sst2_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(pf.shutil, "disk_usage", lambda p: namedtuple("u", "total used free")(10, 10, 1024))
    with pytest.raises(PreflightError, match=r"^output_dir: .* has 0 MiB free"):
        preflight(parse_study(_raw(sst2_dir, tmp_path / "runs")))


def test_disk_full_mid_run_is_one_line(sst2_dir, tmp_path):
    cfg = parse_study(_raw(sst2_dir, tmp_path / "runs"))
    err = output_error(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "runs" / "x")), cfg)
    assert isinstance(err, UserError) and "no space left" in str(err) and "\n" not in str(err)
    assert output_error(OSError(errno.ECONNRESET, "reset"), cfg) is None
    assert output_error(OSError(errno.EACCES, "denied", "/etc/x"), cfg) is None
    assert str(output_error(OSError(errno.ENOSPC, "full", "/tmp/ray/x"), cfg)).startswith("disk: no space")


def test_features_command_checks_its_models_before_ray(sst2_dir, tmp_path):
    raw = yaml.safe_load((REPO / "experiments" / "grid.yaml").read_text())
    raw["output_dir"] = str(tmp_path / "runs")
    raw["dataset"]["source"] = str(sst2_dir)
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "dataselect", "features", str(cfg)], capture_output=True,
                       text=True, env=env, cwd=tmp_path, timeout=60)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1, r.stderr
    assert "features.encoder" in errors[0] and "trainer.model" not in errors[0]
    assert not (tmp_path / "runs").exists()
