"""--resume continues the same study only: changed fields named, grid additions allowed,
older studies still resumable, an untrusted Tune state refused. No Ray."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from dataselect.core.errors import error_lines
from dataselect.selectors.kcenter import KCenterGreedy
from dataselect.sweep.resume import (
    IDENTITY_FILE,
    Identity,
    ResumeError,
    check_config,
    check_inputs,
    check_selections,
    check_tune_state,
    current_identity,
    read_identity,
    write_identity,
)
from dataselect.sweep.study import parse_study

DATA = "data-fp-1"


def _raw(tmp_path: Path, **over) -> dict:
    raw = {"name": "ident", "output_dir": str(tmp_path / "runs"),
           "dataset": {"source": "../shared/data/sst2", "pool_size": 100},
           "features": {"encoder": "minilm", "perplexity_model": None, "text_metrics": False},
           "selectors": [{"name": "random"}, {"name": "kcenter"}],
           "grid": {"fractions": [0.1], "seeds": [0, 1], "full_reference": False},
           "trainer": {"mode": "probe", "model": "minilm"}}
    raw.update(over)
    return raw


def _stored(tmp_path: Path, raw: dict) -> Identity:
    """What a sweep of ``raw`` wrote, read back as --resume reads it."""
    cfg = parse_study(raw)
    study = tmp_path / "study"
    study.mkdir(exist_ok=True)
    write_identity(study, current_identity(cfg, DATA))
    return read_identity(study)


def _check(tmp_path: Path, old: dict, new: dict, data: str = DATA) -> bool:
    cfg = parse_study(new)
    return check_config(cfg, current_identity(cfg, data), _stored(tmp_path, old))


def test_the_same_config_resumes(tmp_path):
    raw = _raw(tmp_path)
    assert _check(tmp_path, raw, copy.deepcopy(raw)) is False
    # Fields that change no result (Ray resources, the report, throughput) do not count.
    moved = _raw(tmp_path, ray={"num_cpus": 1, "max_concurrent_trials": 1}, report={"metric": "macro_f1"})
    moved["features"]["batch_size"] = 8
    assert _check(tmp_path, raw, moved) is False


@pytest.mark.parametrize(("where", "value", "named"), [
    ("trainer", {"mode": "probe", "model": "minilm", "probe_c": 0.5}, "trainer.probe_c (1.0 -> 0.5)"),
    ("dataset", {"source": "../shared/data/sst2", "pool_size": 200}, "dataset.pool_size (100 -> 200)"),
    ("selectors", [{"name": "random"}, {"name": "kcenter", "params": {"metric": "cosine"}}],
     "selectors[kcenter]"),
    ("selectors", [{"name": "random"}], "selectors[kcenter] (removed)"),
])
def test_a_changed_result_field_is_one_line_naming_it_and_the_ways_on(tmp_path, where, value, named):
    old = _raw(tmp_path)
    with pytest.raises(ResumeError) as info:
        _check(tmp_path, old, _raw(tmp_path, **{where: value}))
    lines = error_lines(info.value)
    assert len(lines) == 1 and info.value.exit_code == 2
    assert named in lines[0]
    assert "resume with the config study 'ident' ran with" in lines[0]
    assert "rerun without --resume" in lines[0] and "new name" in lines[0]


def test_grid_only_additions_resume_as_a_new_experiment(tmp_path):
    old = _raw(tmp_path)
    more = _raw(tmp_path, selectors=[{"name": "random"}, {"name": "kcenter"}, {"name": "herding"}],
                grid={"fractions": [0.1, 0.2], "seeds": [0, 1, 2], "full_reference": True})
    assert _check(tmp_path, old, more) is True
    fewer = _raw(tmp_path, grid={"fractions": [0.1], "seeds": [0], "full_reference": False})
    with pytest.raises(ResumeError, match=r"no longer holds 2 of its trials \(kcenter_f0.1_s1, random_f0.1_s1\)"):
        _check(tmp_path, old, fewer)


def test_other_data_or_code_is_refused(tmp_path, monkeypatch):
    raw = _raw(tmp_path)
    with pytest.raises(ResumeError, match=r"data.fingerprint \(\"data-fp-1\" -> \"data-fp-2\"\)"):
        _check(tmp_path, raw, raw, data="data-fp-2")
    import importlib

    probe_mod = importlib.import_module("dataselect.train.probe")  # the package's `probe` is the function
    stored, cfg = _stored(tmp_path, raw), parse_study(raw)  # written by version-1 code
    monkeypatch.setattr(KCenterGreedy, "version", 2)
    with pytest.raises(ResumeError, match=r"code.selectors\[kcenter\] \(\{\} -> \{\"KCenterGreedy\": 2\}\)"):
        check_config(cfg, current_identity(cfg, DATA), stored)
    monkeypatch.undo()
    monkeypatch.setattr(probe_mod, "CODE_VERSION", 2)
    with pytest.raises(ResumeError, match=r"code.trainer \(1 -> 2\)"):
        check_config(cfg, current_identity(cfg, DATA), stored)


def _old_study(tmp_path: Path, raw: dict, drop: dict[str, list[str]]) -> Path:
    """A study folder as an older dataselect left it: study.json without ``drop``'s fields,
    no identity.json, inputs/inputs.json."""
    cfg = parse_study(raw).model_dump(mode="json")
    for section, fields in drop.items():
        for f in fields:
            del cfg[section][f]
    study = tmp_path / "old"
    (study / "inputs").mkdir(parents=True)
    (study / "inputs" / "inputs.json").write_text(json.dumps({"key": "inputs-1"}))
    sel = [{"selector": "kcenter", "fraction": 0.1, "seed": 0, "path": str(study / "manifests" / "abc.parquet")}]
    (study / "study.json").write_text(json.dumps({"config": cfg, "dataset": {"fingerprint": DATA},
                                                  "selections": sel}))
    return study


def test_a_study_from_before_identity_files_and_newer_fields_resumes(tmp_path):
    """The families study runs on code without trainer.precision / adamw and without
    identity.json: today's config of it, pinned to the old behaviour, must resume."""
    raw = _raw(tmp_path, trainer={"mode": "finetune", "model": "minilm"})
    study = _old_study(tmp_path, raw, {"trainer": ["precision", "adamw"]})
    stored = read_identity(study)
    assert not (study / IDENTITY_FILE).exists()
    assert stored.inputs == "inputs-1" and stored.manifests == {"kcenter|0.1|0": "abc.parquet"}
    pinned = _raw(tmp_path, trainer={"mode": "finetune", "model": "minilm", "adamw": "foreach"})
    cfg = parse_study(pinned)
    assert check_config(cfg, current_identity(cfg, DATA), stored) is False
    # Unpinned, the new default (fused AdamW) is not what the study trained with.
    cfg = parse_study(raw)
    with pytest.raises(ResumeError, match=r"trainer.adamw \(\"foreach\" -> \"fused\"\)"):
        check_config(cfg, current_identity(cfg, DATA), stored)


def test_inputs_and_selections_are_compared_by_content(tmp_path):
    cfg = parse_study(_raw(tmp_path))
    stored = Identity(config={}, inputs="k1", manifests={"kcenter|0.1|0": "a.parquet"})
    check_inputs(cfg, stored, "k1")
    check_inputs(cfg, Identity(config={}), "k2")  # nothing stored: nothing to compare
    with pytest.raises(ResumeError, match=r"inputs key k1 -> k2"):
        check_inputs(cfg, stored, "k2")
    check_selections(cfg, stored, {"kcenter|0.1|0": "a.parquet", "random|0.1|0": "r.parquet"})
    with pytest.raises(ResumeError, match=r"1 selection\(s\) .* \(kcenter at 0.1 seed 0: selector code"):
        check_selections(cfg, stored, {"kcenter|0.1|0": "b.parquet"})


def test_a_damaged_identity_file_is_refused(tmp_path):
    (tmp_path / IDENTITY_FILE).write_text('{"config": ')
    with pytest.raises(ResumeError, match="identity.json is unreadable"):
        read_identity(tmp_path)


def _tune_state(tmp_path: Path) -> Path:
    exp = tmp_path / "tune" / "ident"
    (exp / "trial_a").mkdir(parents=True)
    (exp / "tuner.pkl").write_bytes(b"\x80\x04N.")
    (exp / "experiment_state-1.json").write_text("{}")
    (exp / "trial_a" / "params.pkl").write_bytes(b"\x80\x04N.")
    return exp


def test_tune_state_of_another_user_or_writable_by_all_is_refused(tmp_path):
    exp = _tune_state(tmp_path)
    check_tune_state(exp)  # ours
    os.chmod(exp / "trial_a" / "params.pkl", 0o666)
    with pytest.raises(ResumeError, match=r"params.pkl is writable by every user \(mode 666\)"):
        check_tune_state(exp)
    os.chmod(exp / "trial_a" / "params.pkl", 0o644)
    if os.getuid() != 0:
        pytest.skip("only root can give a file to another user here")
    os.chown(exp / "tuner.pkl", 4242, 4242)
    with pytest.raises(ResumeError, match=r"tuner.pkl is owned by uid 4242, not by you") as info:
        check_tune_state(exp)
    assert len(error_lines(info.value)) == 1 and "rerun without --resume" in str(info.value)
    os.chown(exp / "tuner.pkl", os.getuid(), os.getgid())
    os.symlink(tmp_path / "elsewhere.pkl", exp / "linked.pkl")
    (tmp_path / "elsewhere.pkl").write_bytes(b"")
    os.chown(tmp_path / "elsewhere.pkl", 4242, 4242)
    with pytest.raises(ResumeError, match="owned by uid 4242"):
        check_tune_state(exp)
