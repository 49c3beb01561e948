"""Trial and inputs caches: damaged files are misses, writes are atomic, the trainer's code is in the key."""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from dataselect.core.atomic import atomic_write, atomic_write_text
from dataselect.sweep.inputs import write_inputs
from dataselect.sweep.trial import read_cached_result, trainer_key

TRAINER = {"mode": "finetune", "model": "minilm", "learning_rate": 1e-4, "precision": "auto"}


def test_trainer_code_version_enters_the_key_only_when_not_one(monkeypatch):
    old = {k: v for k, v in TRAINER.items() if k != "precision"}
    assert trainer_key(TRAINER, "fp32") == old  # version 1: the key results had before versions
    monkeypatch.setattr(importlib.import_module("dataselect.train.trainer"), "CODE_VERSION", 2)
    assert trainer_key(TRAINER, "fp32") == {**old, "code_version": 2}
    # A lender's trial records the version it trained with; its key is rebuilt with that one.
    assert trainer_key(TRAINER, "fp32", code_version=1) == old
    probe = {"mode": "probe", "model": "minilm"}
    assert trainer_key(probe, None) == probe  # the probe has its own version, still 1


@pytest.mark.parametrize("text", ['{"config_hash": "abc", "res', "", "[1, 2]", '{"config_hash": 1}',
                                  "\udcff"])
def test_a_damaged_trial_result_is_a_miss_kept_aside(tmp_path, caplog, text):
    path = tmp_path / "kcenter_f0.1_s0" / "result.json"
    path.parent.mkdir()
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with caplog.at_level(logging.WARNING, logger="dataselect.sweep.trial"):
        assert read_cached_result(path) is None
    aside = list(path.parent.glob("result.json.damaged-*"))
    assert not path.exists() and len(aside) == 1
    assert aside[0].read_bytes() == text.encode("utf-8", "surrogateescape")
    assert len(caplog.records) == 1 and "trained again" in caplog.messages[0]
    assert read_cached_result(path) is None and len(list(path.parent.iterdir())) == 1  # no file: no warning


def test_a_good_trial_result_is_read(tmp_path):
    path = tmp_path / "result.json"
    good = {"config_hash": "abc", "result": {"accuracy": 0.8}}
    atomic_write_text(path, json.dumps(good))
    assert read_cached_result(path) == good


def test_atomic_write_leaves_the_old_file_and_no_temp_on_failure(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_text("old")

    def half(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(path, half)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.parquet"]
    atomic_write_text(path, "new", fsync=True)
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["x.parquet"]


def _ds(fingerprint: str, n: int = 6) -> SimpleNamespace:
    train = pd.DataFrame({"id": np.arange(n, dtype=np.int64), "text": [f"t {i} {fingerprint}" for i in range(n)],
                          "label": np.arange(n) % 2})
    evalf = pd.DataFrame({"id": np.arange(3, dtype=np.int64), "text": ["a", "b", "c"], "label": [0, 1, 0]})
    return SimpleNamespace(fingerprint=fingerprint, train=train, eval=evalf, noise=None, validation=None)


def test_a_rewrite_of_inputs_that_fails_half_way_leaves_no_stamp(tmp_path, monkeypatch):
    """The stamp that vouched for the old files goes first and the new one comes last:
    a crash between leaves no stamp, so no reader takes half-new files for the old ones."""
    import dataselect.sweep.inputs as inputs

    a = _ds("A")
    key_a = write_inputs(tmp_path, a, {"id": a.train["id"].to_numpy()}, None, "feat")
    stamp = tmp_path / "inputs" / "inputs.json"
    assert json.loads(stamp.read_text())["key"] == key_a
    b = _ds("B")
    real = inputs.save_parquet

    def crash_on_eval(path, frame):
        if path.name == "eval.parquet":
            raise OSError(5, "Input/output error")
        real(path, frame)

    monkeypatch.setattr(inputs, "save_parquet", crash_on_eval)
    with pytest.raises(OSError):
        write_inputs(tmp_path, b, {"id": b.train["id"].to_numpy()}, None, "feat")
    assert not stamp.exists()
    assert pd.read_parquet(tmp_path / "inputs" / "pool.parquet")["text"].str.endswith("B").all()
    assert not [p for p in (tmp_path / "inputs").iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    key_b = write_inputs(tmp_path, b, {"id": b.train["id"].to_numpy()}, None, "feat")
    assert key_b != key_a and json.loads(stamp.read_text())["key"] == key_b
