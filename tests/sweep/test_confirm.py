"""Screen, then confirm (issue 31 items 3-4): the rule, the arms' grid, the pre-registration
before Ray, fresh seeds, the report's statement and ``plan``'s seeds, on hand-built screens."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from dataselect.cli import app
from dataselect.core.errors import ConfigError
from dataselect.report.confirm import choose, confirm_lines
from dataselect.report.stats import min_detectable_effect
from dataselect.sweep import run as run_mod
from dataselect.sweep.confirm import PREREG_FILE, design, plan_lines, read_screen
from dataselect.sweep.resume import trial_runs
from dataselect.sweep.select_stage import grid_specs
from dataselect.sweep.study import load_study, parse_study

from .conftest import study_raw

ROOT = Path(__file__).resolve().parents[2]

# (selector, fraction, Δ, lower bound): at 0.1 the two rules disagree (c has the largest Δ but
# the widest interval), at 0.25 'b' has no bound (under 2 seed pairs).
SCREEN = [("random", 0.1, 0.0, np.nan), ("a", 0.1, 0.020, 0.005), ("b", 0.1, 0.010, 0.008),
          ("c", 0.1, 0.030, -0.010), ("d", 0.1, -0.010, -0.030), ("full", 1.0, 0.080, 0.070),
          ("a", 0.25, 0.001, -0.004), ("b", 0.25, 0.040, np.nan), ("c", 0.25, 0.002, -0.001),
          ("d", 0.25, 0.003, -0.002)]
SPECS = {"a": ("kcenter", {}), "b": ("herding", {}), "c": ("kmeans", {"n_clusters": 4}), "d": ("kcenter", {})}


def _summary(rows: list[tuple[str, float, float, float]], sd: float = 0.01, var_rows: float = 1e-5) -> pd.DataFrame:
    return pd.DataFrame([{"metric": "accuracy", "selector": s, "fraction": f, "n_seeds": 5, "delta": d,
                          "ci_low": lo, "ci_high": d + 0.02, "sd_seed": sd, "var_rows": var_rows, "n_pairs": 5}
                         for s, f, d, lo in rows])


def _screen(root: Path, rows: list[tuple[str, float, float, float]] = SCREEN, *, seeds: tuple[int, ...] = (0, 1),
            validation: list[tuple[str, float, float, float]] | None = None, n_eval: int | None = None,
            **summary_kw: Any) -> Path:
    """A finished screen's folder as a sweep leaves it: report/summary.csv and results.csv (+ study.json)."""
    rep = root / "report"
    rep.mkdir(parents=True, exist_ok=True)
    _summary(rows, **summary_kw).to_csv(rep / "summary.csv", index=False)
    if validation is not None:
        _summary(validation).to_csv(rep / "validation_summary.csv", index=False)
    res = [{"trial": f"{s}_s{sd}", "selector": s, "name": SPECS.get(s, (s, {}))[0],
            "params": json.dumps(SPECS.get(s, (s, {}))[1]), "fraction": 0.1, "seed": sd, "status": "TERMINATED",
            "mode": "probe", "model": "logreg"} for s in ("random", *SPECS) for sd in seeds]
    pd.DataFrame(res).to_csv(rep / "results.csv", index=False)
    if n_eval is not None:
        (root / "study.json").write_text(json.dumps({"name": root.name, "dataset": {"n_eval": n_eval}}))
    return root


def _raw(sst2_dir: Path, tmp_path: Path, screen: Path, **confirm: Any) -> dict[str, Any]:
    raw = study_raw(sst2_dir, tmp_path / "runs", "conf", ray_tmp=tmp_path / "ray",
                    selectors=[{"name": "random"}],
                    grid={"fractions": [0.1, 0.25], "seeds": [10, 11, 12], "full_reference": False})
    raw["ray"] = {"num_cpus": 2}  # no Ray starts here
    raw["confirm"] = {"screen": str(screen), "k": 2, **confirm}
    return raw


def test_the_rules_choose_the_k_largest_delta_or_lower_bound_per_fraction():
    s = _summary(SCREEN)
    top = choose(s, "top_delta", 2, "accuracy", [0.1, 0.25])
    low = choose(s, "top_lower", 2, "accuracy", [0.1, 0.25])
    assert top[0.1]["selector"].tolist() == ["c", "a"] and top[0.25]["selector"].tolist() == ["b", "d"]
    assert low[0.1]["selector"].tolist() == ["b", "a"]
    assert low[0.25]["selector"].tolist() == ["c", "d"]  # b has no bound: never chosen by it
    assert top[0.1]["rank"].tolist() == [1, 2]
    # random and the whole pool are never arms, even when asked for more than there are.
    assert set(choose(s, "top_delta", 9, "accuracy", [0.1])[0.1]["selector"]) == {"a", "b", "c", "d"}


def test_each_chosen_arm_trains_only_at_the_fractions_it_was_chosen_at(sst2_dir, tmp_path):
    screen = _screen(tmp_path / "screen")
    cfg = parse_study(_raw(sst2_dir, tmp_path, screen))
    assert [(s.key, s.name, s.params, s.fractions) for s in cfg.selectors] == [
        ("random", "random", {}, None), ("c", "kmeans", {"n_clusters": 4}, [0.1]), ("a", "kcenter", {}, [0.1]),
        ("b", "herding", {}, [0.25]), ("d", "kcenter", {}, [0.25])]
    cells = {(s.key, f) for s, f in grid_specs(cfg)}
    assert cells == {("random", 0.1), ("random", 0.25), ("c", 0.1), ("a", 0.1), ("b", 0.25), ("d", 0.25)}
    # --resume's view of the grid (from the stored config) is the sweep's.
    assert trial_runs(cfg.model_dump(mode="json")) == {(k, f, sd) for k, f in cells for sd in (10, 11, 12)}


def test_the_rule_reads_the_screens_validation_rows_when_it_scored_them(sst2_dir, tmp_path):
    val = [("random", f, 0.0, np.nan) for f in (0.1, 0.25)] + [
        ("d", 0.1, 0.05, 0.01), ("b", 0.1, 0.04, 0.01), ("a", 0.1, 0.0, -0.01),
        ("a", 0.25, 0.05, 0.01), ("c", 0.25, 0.04, 0.01), ("d", 0.25, 0.0, -0.01)]
    screen = _screen(tmp_path / "screen", validation=val)
    cfg = parse_study(_raw(sst2_dir, tmp_path, screen))
    assert {s.key: s.fractions for s in cfg.selectors[1:]} == {"d": [0.1], "b": [0.1], "a": [0.25], "c": [0.25]}
    assert read_screen(cfg.confirm).basis == "validation"


def test_seeds_shared_with_the_screen_are_one_error_naming_both_lists(sst2_dir, tmp_path):
    screen = _screen(tmp_path / "screen", seeds=(0, 1, 11))
    path = tmp_path / "conf.yaml"
    path.write_text(yaml.safe_dump(_raw(sst2_dir, tmp_path, screen)))
    r = CliRunner().invoke(app, ["plan", str(path)])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert lines == [f"error: grid.seeds: [10, 11, 12] share [11] with the seeds of screen 'screen' ({screen}): "
                     "[0, 1, 11]; a confirmatory study trains on fresh seeds only"]


def test_a_confirm_study_lists_only_its_baseline_and_fractions_its_screen_has(sst2_dir, tmp_path):
    screen = _screen(tmp_path / "screen")
    raw = _raw(sst2_dir, tmp_path, screen)
    with pytest.raises(ConfigError, match=r"^selectors: a confirmatory study .* got \['random', 'kcenter'\]"):
        parse_study({**raw, "selectors": [{"name": "random"}, {"name": "kcenter"}]})
    with pytest.raises(ConfigError, match=r"grid.fractions: \[0.5\] not in screen"):
        parse_study({**raw, "grid": {**raw["grid"], "fractions": [0.1, 0.5]}})
    with pytest.raises(ConfigError, match="holds no finished report"):
        parse_study(_raw(sst2_dir, tmp_path, tmp_path / "nowhere"))


def test_the_preregistration_is_written_before_ray_starts_and_must_match_on_resume(sst2_dir, tmp_path,
                                                                                  monkeypatch):
    screen = _screen(tmp_path / "screen")
    path = tmp_path / "conf.yaml"
    path.write_text(yaml.safe_dump(_raw(sst2_dir, tmp_path, screen)))
    seen: list[dict[str, Any]] = []

    def no_ray(cfg, ds, study, **kw):  # stands in for everything from Ray's start on
        seen.append(json.loads((study / PREREG_FILE).read_text()))
        return study / "report" / "report.md"

    monkeypatch.setattr(run_mod, "_sweep", no_ray)
    cfg = load_study(path)
    run_mod.run_sweep(cfg)
    pre = seen[0]
    assert pre["rule"] == "top_delta" and pre["k"] == 2 and pre["basis"] == "eval" and pre["seeds"] == [10, 11, 12]
    assert pre["screen"]["seeds"] == [0, 1] and pre["screen"]["path"] == str(screen)
    assert pre["screen"]["sha256"] == hashlib.sha256((screen / "report" / "summary.csv").read_bytes()).hexdigest()
    assert {f: [a["selector"] for a in v] for f, v in pre["arms"].items()} == {"0.1": ["c", "a"], "0.25": ["b", "d"]}
    assert pre["arms"]["0.1"][0]["delta"] == pytest.approx(0.03)
    assert json.loads((cfg.study_dir / PREREG_FILE).read_text()) == pre
    run_mod.run_sweep(load_study(path), resume=True)  # the same design: accepted, file kept
    assert json.loads((cfg.study_dir / PREREG_FILE).read_text())["written"] == pre["written"]
    # The screen's numbers change (a rerun of it): the rule now picks another arm at 0.1.
    _screen(screen, [(s, f, 0.05 if s == "d" else d, lo) for s, f, d, lo in SCREEN])
    with pytest.raises(ConfigError, match=r"arms at 0.1: \['c', 'a'\] -> \['d', 'c'\].*screen.sha256") as err:
        run_mod.run_sweep(load_study(path), resume=True)
    assert str(err.value).startswith("confirm: ") and "\n" not in str(err.value)
    assert len(seen) == 2  # refused before Ray


def test_the_report_states_rule_screen_and_that_no_screen_trial_is_in_it():
    pre = {"rule": "top_lower", "k": 2, "metric": "accuracy", "basis": "validation", "written": "2026-12-07",
           "seeds": [10, 11], "screen": {"name": "probe", "path": "reports/probe", "summary": "validation_summary.csv",
                                          "sha256": "ab" * 32, "seeds": [0, 1]},
           "arms": {"0.1": [{"selector": "a", "rank": 1, "delta": 0.02, "ci_low": 0.01, "ci_high": 0.03}]}}
    df = pd.DataFrame({"trial": ["a_s10", "a_s11"], "seed": [10, 11], "reused_from": [None, None]})
    summary = _summary([("a", 0.1, 0.012, 0.002)]).assign(p_holm=0.04)
    text = "\n".join(confirm_lines({"preregistration": pre, "config": {}}, df, summary, "accuracy"))
    assert "screen **probe** (`reports/probe`" in text and "the largest lower 95 % bound" in text
    assert "each fraction's Holm family is its chosen arms only" in text and "its validation rows" in text
    assert "No screening trial enters these statistics" in text
    assert "| 10 % | 1 | a | +2.0 | [+1.0, +3.0] | +1.2 | [+0.2, +3.2] | 0.040 |" in text
    # A trial on a screen seed (or adopted from the screen) is named, not silently counted.
    bad = pd.DataFrame({"trial": ["a_s1", "a_s11"], "seed": [1, 11],
                        "reused_from": [None, "reports/probe/trials.parquet#a_s11"]})
    text = "\n".join(confirm_lines({"preregistration": pre}, bad, summary, "accuracy"))
    assert "**Warning:** 2 trial(s)" in text and "No screening trial" not in text
    assert confirm_lines({}, df, summary, "accuracy") == []


def test_plan_asks_for_the_fewest_seeds_that_detect_the_stated_effect(sst2_dir, tmp_path):
    """From the screen's own seed sd and row variance (rescaled from its 1,000 eval rows to this
    study's), the seeds S with MDE(S) <= effect < MDE(S - 1) after Holm over k."""
    screen = _screen(tmp_path / "screen", sd=0.02, var_rows=4e-6, n_eval=1000)
    cfg = parse_study(_raw(sst2_dir, tmp_path, screen, effect=0.02))
    d = design(cfg, read_screen(cfg.confirm), 4000)
    for f in (0.1, 0.25):
        got = d[f]
        assert got.var_rows == pytest.approx(1e-6) and got.alpha == pytest.approx(0.025)
        mde = [min_detectable_effect(0.02, 1e-6, s, n_rows=4000, alpha=0.025) for s in (got.seeds - 1, got.seeds)]
        assert mde[1] <= 0.02 < mde[0]
    lines = plan_lines(cfg, 4000, 600.0, lambda s: f"{s:.0f} s")
    assert any(f"a 2-point Δ accuracy needs {d[0.1].seeds} seeds per arm" in ln for ln in lines)
    assert any(f"{d[0.1].seeds} seeds (grid.seeds has 3): trials about {600 * d[0.1].seeds / 3:.0f} s" in ln
               for ln in lines)
    assert any("the screen trained probe logreg, this study probe minilm" in ln for ln in lines)


def test_the_example_confirm_config_resolves_from_the_committed_screen(monkeypatch):
    monkeypatch.chdir(ROOT)  # its paths are relative to the repository root
    cfg = load_study(ROOT / "experiments" / "confirm_families.yaml", check_paths=False)
    chosen = {s.key: s.fractions for s in cfg.selectors[1:]}
    assert sum(len(f or cfg.grid.fractions) for f in chosen.values()) == 2 * cfg.confirm.k == 8
    summary = pd.read_csv(ROOT / "reports" / "families_probe" / "summary.csv")
    best = (summary[(summary["metric"] == "accuracy") & (summary["fraction"] == 0.01)
                    & ~summary["selector"].isin(["random", "full"])].nlargest(4, "delta")["selector"])
    assert {k for k, f in chosen.items() if f is None or 0.01 in f} == set(best)
    assert not set(cfg.grid.seeds) & set(read_screen(cfg.confirm).seeds)
