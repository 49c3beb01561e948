"""``plan``: what it counts, what it says is cached, its errors, and its time against a real run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dataselect.core.data import load_dataset
from dataselect.sweep.plan import ROUGH, make_plan

from .conftest import make_cfg, study_raw

REPO = Path(__file__).resolve().parents[2]


def _ft_raw(sst2_dir: Path, out: Path, name: str, ray_tmp: Path) -> dict:
    """A tiny fine-tune study: random and k-center (which needs embeddings), 8 trials."""
    raw = study_raw(sst2_dir, out, name, ray_tmp=ray_tmp,
                    grid={"fractions": [0.1, 0.25], "seeds": [0, 1], "full_reference": False},
                    trainer={"mode": "finetune", "model": "minilm", "epochs": 2.0, "batch_size": 16,
                             "max_length": 48, "eval_batch_size": 64})
    raw["dataset"] = {**raw["dataset"], "pool_size": 400, "eval_size": 200}
    raw["cache_dir"] = str(out / "cache")
    return raw


def test_plan_counts_trials_and_the_features_to_compute(sst2_dir, tmp_path, ray_tmp):
    raw = _ft_raw(sst2_dir, tmp_path, "a", ray_tmp)
    raw["grid"] = {**raw["grid"], "full_reference": True, "full_reference_seeds": 1}
    cfg = make_cfg(raw)
    plan = make_plan(cfg, load_dataset(cfg.dataset), slots=2)
    assert plan.trials == {"random": 4, "kcenter": 4, "full": 1}  # 2 fractions x 2 seeds; full on 1 seed
    # fine-tune: no eval embedding needed; the tokenizer's subword ratio is a default family
    assert plan.features == [("pool", "embedding", False, 400), ("pool", "subword_ratio", False, 400)]
    # trials part by hand: per trial set-up + steps x batch x s/example + eval rows x s/row, over 2 slots
    r = ROUGH["finetune"]
    steps = {40: 6, 100: 14, 400: 50}  # ceil(2 epochs x ceil(rows / 16))
    examples = 4 * steps[40] * 16 + 4 * steps[100] * 16 + steps[400] * 16
    expect = (9 * r["setup_s"] + examples * r["train_s_per_example"] + 9 * 200 * r["eval_s_per_row"]) / 2
    assert plan.seconds["trials"] == pytest.approx(expect)
    assert plan.seconds["features"] == pytest.approx(400 * (ROUGH["embed_s_per_row"] + ROUGH["other_family_s_per_row"]))
    text = "\n".join(plan.lines())
    assert "9 trials" in text and "to compute: pool embedding (400 rows)" in text
    assert "detects at 10 %: |Δ accuracy| >=" in text and "assumed: seed sd 1 points" in text


def test_plan_refuses_a_bad_config_like_the_sweep(sst2_dir, tmp_path, ray_tmp):
    raw = _ft_raw(sst2_dir, tmp_path, "bad", ray_tmp)
    raw["grid"]["fractions"] = [0.1, 1.5]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    outs = [subprocess.run([sys.executable, "-m", "dataselect.sweep", *cmd, str(path)], cwd=REPO,
                           capture_output=True, text=True, timeout=120) for cmd in (["plan"], [])]
    for r in outs:
        assert r.returncode == 2 and "Traceback" not in r.stderr
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "grid.fractions" in errors[0]
    assert outs[0].stderr == outs[1].stderr
    assert not (tmp_path / "bad").exists()  # nothing written


@pytest.mark.timing
def test_predicted_time_is_close_to_the_real_run(sst2_dir, tmp_path, ray_tmp, ray_local):
    """The rough model within 2x of a real run; then, with that run's own timings, within 1.5x."""
    from dataselect.sweep.run import run_sweep

    cfg = make_cfg(_ft_raw(sst2_dir, tmp_path, "a", ray_tmp))
    ds = load_dataset(cfg.dataset)
    plan = make_plan(cfg, ds)
    predicted = plan.total_seconds - plan.seconds["ray start"]  # this test's Ray is already up
    t = time.perf_counter()
    run_sweep(cfg)
    actual = time.perf_counter() - t
    assert 0.5 <= actual / predicted <= 2.0, (actual, predicted, plan.lines())

    again = make_cfg(_ft_raw(sst2_dir, tmp_path, "b", ray_tmp))
    plan_b = make_plan(again, ds)
    assert "earlier studies here (a)" in plan_b.rates.source
    assert all(cached for _, _, cached, _ in plan_b.features)  # study a computed them
    predicted = plan_b.total_seconds - plan_b.seconds["ray start"]
    t = time.perf_counter()
    run_sweep(again)
    actual = time.perf_counter() - t
    assert 1 / 1.5 <= actual / predicted <= 1.5, (actual, predicted, plan_b.lines())


def _earlier(out: Path, name: str, trainer: dict, sd: dict[float, float], n_eval: int = 1000) -> None:
    """A finished study's study.json and report/summary.csv, as the report writes them."""
    import json

    import pandas as pd

    (out / name / "report").mkdir(parents=True)
    (out / name / "study.json").write_text(json.dumps({"config": {"trainer": trainer},
                                                        "dataset": {"n_eval": n_eval}}))
    rows = [{"metric": "accuracy", "selector": s, "fraction": f, "sd_seed": v, "var_rows": 4e-5}
            for f, v in sd.items() for s in ("a", "b")]
    pd.DataFrame(rows).to_csv(out / name / "report" / "summary.csv", index=False)


def test_detectable_effect_uses_a_same_trainer_study_per_fraction_and_the_holm_family(sst2_dir, tmp_path, ray_tmp):
    from dataselect.report.stats import min_detectable_effect

    raw = _ft_raw(sst2_dir, tmp_path, "mde", ray_tmp)
    cfg = make_cfg(raw)
    t = cfg.trainer
    same = {"mode": t.mode, "model": t.model, "max_length": t.max_length, "batch_size": t.batch_size}
    _earlier(tmp_path, "aprobe", {**same, "mode": "probe"}, {0.1: 0.2, 0.25: 0.2})  # first by name, ignored
    _earlier(tmp_path, "ft", same, {0.1: 0.03, 0.25: 0.01})
    ds = load_dataset(cfg.dataset)
    n_eval = len(ds.eval)
    plan = make_plan(cfg, ds, slots=2)
    assert plan.comparisons == 1  # kcenter vs random, per fraction
    for frac, sd in ((0.1, 0.03), (0.25, 0.01)):
        want = min_detectable_effect(sd, 4e-5 * 1000 / n_eval, 2, n_rows=n_eval, alpha=0.05)
        assert plan.mde[frac] == pytest.approx(want)
    assert "study 'ft', same trainer" in "\n".join(plan.lines())
    whole = make_plan(make_cfg({**raw, "report": {"holm": "study"}}), ds, slots=2)
    assert whole.comparisons == 2 and whole.mde[0.1] > plan.mde[0.1]
    assert "Holm over 2 comparisons" in "\n".join(whole.lines())


def test_plan_does_not_count_trials_already_finished_or_adoptable(sst2_dir, tmp_path, ray_tmp):
    raw = _ft_raw(sst2_dir, tmp_path, "part", ray_tmp)
    lender = tmp_path / "lender"
    raw["cache_dir"] = str(lender)
    cfg = make_cfg(raw)
    ds = load_dataset(cfg.dataset)
    before = make_plan(cfg, ds, slots=2)
    for folder, name in ((cfg.study_dir, "random_f0.1_s0"), (cfg.study_dir, "kcenter_f0.25_s1"),
                         (lender, "random_f0.1_s1")):
        (folder / "trials" / name).mkdir(parents=True)
        (folder / "trials" / name / "result.json").write_text("{}")
    after = make_plan(cfg, ds, slots=2)
    r = ROUGH["finetune"]
    per = {40: 6 * 16, 100: 14 * 16}  # examples of a 10 % (40-row) and a 25 % (100-row) trial
    saved = (3 * r["setup_s"] + (2 * per[40] + per[100]) * r["train_s_per_example"]
             + 3 * 200 * r["eval_s_per_row"]) / 2
    assert after.seconds["trials"] == pytest.approx(before.seconds["trials"] - saved)
    assert sum(after.trials.values()) == sum(before.trials.values()) == 8  # the grid is the grid
    assert any("2 trials have a finished result in the study folder and 1 in cache_dir's study" in n
               for n in after.notes)
