"""Config validation: every bad field is one clear line naming it."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dataselect.core.config import StudyConfig
from dataselect.core.errors import ConfigError
from dataselect.sweep.study import load_study, parse_study

REPO = Path(__file__).resolve().parents[2]


def _base(sst2_dir: Path) -> dict:
    return {
        "name": "t",
        "output_dir": "runs",
        "dataset": {"source": str(sst2_dir)},
        "features": {"encoder": "minilm", "perplexity_model": None},
        "selectors": [{"name": "random"}, {"name": "kcenter", "params": {"metric": "cosine"}}],
        "grid": {"fractions": [0.05, 0.1], "seeds": [0, 1]},
        "trainer": {"mode": "probe", "model": "minilm"},
        "ray": {"num_cpus": 2},
    }


def test_valid_config_round_trips(sst2_dir):
    cfg = parse_study(_base(sst2_dir))
    assert isinstance(cfg, StudyConfig)
    assert cfg.grid.fractions == [0.05, 0.1]
    assert cfg.selectors[1].params == {"metric": "cosine"}
    assert cfg.trainer.learning_rate == 8e-5  # ModernBERT GLUE recipe default
    assert cfg.study_dir == Path("runs") / "t"


def _mut(base: dict, path: str, value):
    out = copy.deepcopy(base)
    node = out
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if p.isdigit() else node[p]
    last = parts[-1]
    if value is _DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return out


_DELETE = object()

BAD_CASES = [
    # (mutation path, value, expected message fragment)
    ("grid.fractions", [0.05, 0.1, 1.5], "grid.fractions[2]: 1.5 is not in (0, 1]"),
    ("grid.fractions", [0.0], "grid.fractions[0]: 0.0 is not in (0, 1]"),
    ("grid.fractions", [-0.2], "grid.fractions[0]: -0.2 is not in (0, 1]"),
    ("grid.fractions", [float("nan")], "grid.fractions[0]: nan is not in (0, 1]"),
    ("grid.fractions", [], "grid.fractions: List should have at least 1 item"),
    ("grid.fractions", [0.1, 0.1], "grid.fractions[1]: 0.1 is repeated"),
    # One trial name (`_f0.1_`) for two budgets: refused, not left to overwrite each other.
    ("grid.fractions", [0.1, 0.05, 0.1000001],
     "grid.fractions[2]: 0.1000001 is too close to fractions[0] = 0.1: both name their trials *_f0.1_*"),
    ("grid.seeds", [], "grid.seeds: List should have at least 1 item"),
    ("grid.seeds", [0, "one"], "grid.seeds[1]: Input should be a valid integer"),
    ("grid.fractions", "0.1", "grid.fractions: Input should be a valid list"),
    ("selectors", [], "selectors: List should have at least 1 item"),
    ("selectors.0.name", "nope", "selectors[0].name: unknown selector 'nope'; known:"),
    ("selectors.1", {"name": "random"}, "selectors[1]: duplicate selector label 'random'"),
    ("selectors.1.params", {"metric": "manhattan"}, "selectors[1].params: KCenterGreedy.metric must be"),
    ("selectors.0.colour", "red", "selectors[0].colour: unknown key"),
    ("trainer.mode", "distill", "trainer.mode: Input should be 'finetune' or 'probe'"),
    ("trainer.learning_rate", -1.0, "trainer.learning_rate: Input should be greater than 0"),
    ("trainer.epochs", "two", "trainer.epochs: Input should be a valid number"),
    ("features.pooling", "max", "features.pooling: Input should be 'mean' or 'cls'"),
    ("features.batch_size", 0, "features.batch_size: Input should be greater than 0"),
    ("ray.cpus_per_trial", 0, "ray.cpus_per_trial: Input should be greater than 0"),
    ("ray.temp_dir", "/tmp/" + "x" * 60, "ray.temp_dir: too long for Ray's socket paths"),
    ("dataset.source", "./no/such/folder", "dataset.source: path does not exist: ./no/such/folder"),
    ("dataset.pool_size", 0, "dataset.pool_size: Input should be greater than 0"),
    ("name", "has space", "name: String should match pattern"),
    ("name", _DELETE, "name: required field is missing"),
    ("grid", _DELETE, "grid: required field is missing"),
    ("extra_section", {}, "extra_section: unknown key"),
    ("features.perplexity_model", "standin:bert", "features.perplexity_model: stand-in 'standin:bert' is not allowed here; use one of ['standin:qwen3']"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD_CASES, ids=[c[2][:40] for c in BAD_CASES])
def test_bad_config_is_one_clear_line(sst2_dir, path, value, message):
    raw = _mut(_base(sst2_dir), path, value)
    with pytest.raises(ConfigError) as info:
        parse_study(raw)
    text = str(info.value)
    assert message in text, text
    assert "\n" not in text


def test_yaml_is_safe_loaded(tmp_path, sst2_dir):
    # A python-object tag must be rejected, not executed.
    p = tmp_path / "evil.yaml"
    p.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_study(p)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config: file not found"):
        load_study(tmp_path / "absent.yaml")


def test_not_a_mapping(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_study(p)


def test_cli_exit_code_2_and_no_traceback(tmp_path, sst2_dir):
    raw = _mut(_base(sst2_dir), "grid.fractions", [0.05, 0.1, 1.5])
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(raw))
    r = subprocess.run([sys.executable, "-m", "dataselect", "prepare", str(p)],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: grid.fractions[2]: 1.5 is not in (0, 1]"
    assert "Traceback" not in r.stderr + r.stdout


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_experiments_validate(path):
    # Paths in shipped configs are relative to the repo root.
    cfg = load_study(path, check_paths=False)
    assert cfg.selectors and cfg.grid.fractions


def test_help_commands():
    for args in (["-m", "dataselect", "--help"], ["-m", "dataselect.sweep", "--help"]):
        r = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=120)
        assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "dataselect", "--help"], capture_output=True, text=True, cwd=REPO)
    for stage in ("prepare", "features", "select", "train", "eval", "report", "sweep"):
        assert stage in r.stdout


def test_every_mistake_is_listed_one_line_each(sst2_dir):
    raw = _mut(_base(sst2_dir), "grid.fractions", [0.05, 1.5])
    raw = _mut(raw, "trainer.epochs", -1)
    raw = _mut(raw, "ray.cpus_per_trial", "two")
    raw["features"]["typo_key"] = 1
    with pytest.raises(ConfigError) as info:
        parse_study(raw)
    lines = str(info.value).splitlines()
    assert len(lines) == 4, lines
    assert lines[0] == "features.typo_key: unknown key (check spelling; see the config reference in README.md)"
    assert any(ln == "grid.fractions[1]: 1.5 is not in (0, 1]" for ln in lines)
    assert any(ln.startswith("trainer.epochs:") for ln in lines)
    assert any(ln.startswith("ray.cpus_per_trial:") for ln in lines)


def test_every_selector_mistake_is_listed(sst2_dir, tmp_path):
    raw = _base(sst2_dir)
    raw["selectors"] = [{"name": "randum"}, {"name": "kcenter", "params": {"metric": "manhattan"}},
                        {"name": "consistency"}]
    raw["dataset"]["source"] = str(tmp_path / "absent")
    with pytest.raises(ConfigError) as info:
        parse_study(raw)
    lines = str(info.value).splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["selectors[0].name", "selectors[1].params",
                                                  "selectors[2] ('consistency') reads feature 'eda_embedding'",
                                                  "dataset.source"]


def test_cli_prints_each_mistake_as_an_error_line(tmp_path, sst2_dir):
    raw = _mut(_base(sst2_dir), "grid.fractions", [1.5])
    raw = _mut(raw, "trainer.epochs", 0)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(raw))
    r = subprocess.run([sys.executable, "-m", "dataselect.sweep", str(p)],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["error: grid.fractions[0]: 1.5 is not in (0, 1]",
                                             "error: trainer.epochs: Input should be greater than 0; got 0"]


def test_headerless_columns_need_header_false(sst2_dir):
    raw = _base(sst2_dir)
    raw["dataset"]["columns"] = ["sentence", "label"]
    with pytest.raises(ConfigError, match="dataset: .*set header: false"):
        parse_study(raw)
    raw["dataset"]["header"] = False
    raw["dataset"]["columns"] = ["text", "label"]
    with pytest.raises(ConfigError, match=r"lack \['sentence'\]"):
        parse_study(raw)


def test_fractions_that_name_different_trials_are_accepted(sst2_dir):
    from dataselect.sweep.trial import trial_name_for

    fracs = [0.1, 0.100001, 0.05, 0.0500001, 1.0]
    raw = _mut(_base(sst2_dir), "grid.fractions", fracs)
    cfg = parse_study(raw)
    names = {trial_name_for("random", f, 0) for f in cfg.grid.fractions}
    assert len(names) == len(fracs)  # the property the check guards: one name per fraction
