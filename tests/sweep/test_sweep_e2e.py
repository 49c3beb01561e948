"""A real sweep through Ray Tune: probe grid + a failing selector, and one fine-tune trial."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dataselect.report import format_mean_std, write_report
from dataselect.sweep.run import run_sweep
from dataselect.sweep.trial import trial_name_for

from .conftest import make_cfg, study_raw

pytestmark = pytest.mark.slow


def _tb_scalars(logdir):
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [e.value for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def _table_row(report: str, metric: str, selector: str, fraction: float) -> list[str]:
    section = report.split(f"### {metric}\n", 1)[1].split("###", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 2 and cells[0] == selector and cells[1] == f"{fraction:g}":
            return cells
    raise AssertionError(f"no row {selector} {fraction} in {metric} table:\n{section}")


@pytest.fixture(scope="module")
def probe_study(sst2_dir, tmp_path_factory, ray_tmp, ray_local):
    out = tmp_path_factory.mktemp("studies")
    raw = study_raw(sst2_dir, out, "probe", ray_tmp=ray_tmp)
    # 61 initial centres, more than either budget: its selections raise at run
    # time, so its trials must fail without stopping the sweep.
    raw["selectors"].append({"name": "kcenter", "label": "kc_broken", "params": {"initial": list(range(61))}})
    cfg = make_cfg(raw)
    report = run_sweep(cfg)
    return cfg, report


def test_results_one_row_per_trial(probe_study):
    cfg, report = probe_study
    df = pd.read_csv(report.parent / "results.csv")
    # 3 selectors x 2 fractions x 2 seeds + full x 2 seeds
    assert len(df) == 14 == df["trial"].nunique()
    assert set(df.columns) >= {"selector", "name", "params", "fraction", "seed", "n_train", "n[0]", "n[1]",
                               "accuracy", "macro_f1", "precision", "recall", "selection_seconds",
                               "train_seconds", "status", "error"}
    pq = pd.read_parquet(report.parent / "results.parquet")
    assert len(pq) == len(df)
    ok = df[df["status"] == "TERMINATED"]
    assert len(ok) == 10
    assert (ok.loc[ok["fraction"] == 0.1, "n_train"] == 24).all()
    assert (ok.loc[ok["fraction"] == 0.25, "n_train"] == 60).all()
    assert (ok.loc[ok["selector"] == "full", "n_train"] == 240).all()
    assert (ok["n[0]"] + ok["n[1]"] == ok["n_train"]).all()
    assert ok["accuracy"].between(0, 1).all() and (ok["selection_seconds"] >= 0).all()


def test_failing_selector_is_reported_not_fatal(probe_study):
    cfg, report = probe_study
    df = pd.read_csv(report.parent / "results.csv")
    bad = df[df["selector"] == "kc_broken"]
    assert len(bad) == 4 and (bad["status"] == "ERROR").all()
    assert bad["error"].str.contains("initial must hold at most budget").all()
    for trial in bad["trial"]:  # a trial's own error is not retried (ray.max_trial_retries: 2)
        assert len((cfg.study_dir / "trials" / trial / "attempts.jsonl").read_text().splitlines()) == 1
    text = report.read_text()
    assert "## Failed or incomplete trials" in text and "kc_broken_f0.1_s0" in text


def test_report_agrees_with_results(probe_study):
    cfg, report = probe_study
    df = pd.read_csv(report.parent / "results.csv")
    text = report.read_text()
    for metric in ("accuracy", "macro_f1"):
        vals = df[(df["selector"] == "kcenter") & (df["fraction"] == 0.1)].sort_values("seed")[metric]
        cells = _table_row(text, metric, "kcenter", 0.1)
        assert cells[3] == format_mean_std(vals.mean(), vals.std(ddof=1))
        base = df[(df["selector"] == "random") & (df["fraction"] == 0.1)].sort_values("seed")[metric]
        assert cells[4].strip("*") == f"{(vals.to_numpy() - base.to_numpy()).mean():+.4f}"
        assert cells[9] == "2"
        lo, hi = (float(x) for x in cells[5].strip("[]").split(","))
        assert lo <= float(cells[4].strip("*")) <= hi
    assert "full (whole pool)" in text
    assert "Seeds: 2" in text and "Pool: 240 training rows" in text
    assert "paired t-test" in text and "stand-in" in text  # minilm stands in for ModernBERT
    for fig in ("forest.png", "efficiency.png", "cost.png"):
        png = report.parent / fig
        assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"
        assert f"]({fig})" in text


def test_trials_keep_per_row_predictions_and_subsets(probe_study):
    cfg, report = probe_study
    df = pd.read_csv(report.parent / "results.csv")
    ok = df[df["status"] == "TERMINATED"]
    evalf = pd.read_parquet(cfg.study_dir / "inputs" / "eval.parquet")
    for r in ok.itertuples():
        pred = pd.read_parquet(cfg.study_dir / "trials" / r.trial / "predictions.parquet")
        assert list(pred.columns[:3]) == ["id", "label", "pred"] and {"prob_0", "prob_1"} <= set(pred.columns)
        assert pred["id"].equals(evalf["id"]) and (pred["label"] == evalf["label"]).all()
        assert (pred["pred"] == pred["label"]).mean() == pytest.approx(r.accuracy)
        assert np.allclose(pred[["prob_0", "prob_1"]].sum(axis=1), 1, atol=1e-5)
        assert (pred[["prob_0", "prob_1"]].to_numpy().argmax(1) == pred["pred"]).all()
        kept = pd.read_parquet(cfg.study_dir / "trials" / r.trial / "kept.parquet")
        assert len(kept) == r.n_train and kept["id"].is_unique and "n_words" in kept
    summary = pd.read_csv(report.parent / "summary.csv")
    assert set(summary["metric"]) == {"accuracy", "macro_f1", "precision", "recall"}
    assert summary.loc[summary["selector"] == "kcenter", "p_value"].notna().all()
    assert "**Conclusion.**" in report.read_text().split("## Setup")[0]
    assert "`embedding_norm`, L2-normalised" in report.read_text()


def test_tensorboard_runs_hold_trial_scalars(probe_study):
    cfg, report = probe_study
    df = pd.read_csv(report.parent / "results.csv")
    ok = df[df["status"] == "TERMINATED"]
    tb = cfg.study_dir / "tensorboard"
    assert {p.name for p in tb.iterdir()} >= set(ok["trial"])
    row = ok[ok["trial"] == trial_name_for("kcenter", 0.25, 1)].iloc[0]
    sc = _tb_scalars(tb / row["trial"])
    assert sc["eval/accuracy"] == [pytest.approx(row["accuracy"])]
    assert sc["eval/macro_f1"] == [pytest.approx(row["macro_f1"])]
    assert len(sc["train/loss"]) >= 1


def test_report_rebuilds_from_disk(probe_study):
    cfg, report = probe_study
    before = pd.read_csv(report.parent / "results.csv")
    report.unlink()
    (report.parent / "results.csv").unlink()
    again = write_report(cfg.study_dir)
    assert again == report and report.is_file()
    pd.testing.assert_frame_equal(pd.read_csv(report.parent / "results.csv"), before)


def test_report_command_ends_with_the_conclusion_the_report_states(probe_study):
    cfg, report = probe_study
    out = subprocess.run([sys.executable, "-m", "dataselect", "report", str(cfg.study_dir)],
                         capture_output=True, text=True, check=True).stdout
    text = report.read_text()
    conclusion = text.split("**Conclusion.**\n\n", 1)[1].split("\n\n", 1)[0]
    assert out.startswith(conclusion + "\n")  # word for word, first
    assert "Δ accuracy" in out and "kcenter" in out  # the top rows of the Δ table
    assert out.rstrip().endswith(f"TensorBoard: tensorboard --logdir {cfg.study_dir / 'tensorboard'}")
    assert f"report: {report}" in out


def test_sweep_writes_its_timeline(probe_study):
    cfg, _ = probe_study
    data = json.loads((cfg.study_dir / "timeline.json").read_text())
    assert {"preflight", "ray_start", "features", "select", "tune", "report"} <= set(data["stages"])
    assert sum(data["stages"].values()) <= data["total_s"]
    o = data["overhead"]
    assert o["trials"] == 14 and o["slots"] == 2 and 0 < o["trial_work"] <= o["trial_wall"]
    assert 0 < o["overhead"] < o["total"]
    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_sweep_overhead.py"
    out = subprocess.run([sys.executable, str(script), str(cfg.study_dir)],
                         capture_output=True, text=True, check=True).stdout
    assert "HEADLINE: overhead" in out and "| Tune run |" in out

def test_select_stage_rerun_reuses_manifests(probe_study):
    cfg, report = probe_study
    from dataselect.core.data import load_dataset
    from dataselect.sweep.inputs import stage_features
    from dataselect.sweep.select_stage import run_select_stage

    files = {p: p.stat().st_mtime_ns for p in (cfg.study_dir / "manifests").glob("*.parquet")}
    # random, kcenter (x2 fractions x2 seeds) + full once: it ignores the seed
    assert len(files) == 2 * 2 * 2 + 1
    table, fp, _ = stage_features(cfg, load_dataset(cfg.dataset))  # feature cache hit
    again = run_select_stage(cfg, table, features_fingerprint=fp, manifest_dir=cfg.study_dir / "manifests")
    ok = {k: r for k, r in again.items() if r.error is None}
    assert {r.path for r in ok.values()} == set(files) and all(r.reused for r in ok.values())
    assert {p: p.stat().st_mtime_ns for p in (cfg.study_dir / "manifests").glob("*.parquet")} == files
    df = pd.read_csv(report.parent / "results.csv").set_index("trial")
    r = again[("kcenter", 0.25, 1)]
    assert r.budget == 60 and r.seconds == pytest.approx(df.loc["kcenter_f0.25_s1", "selection_seconds"])
    assert {k for k, r in again.items() if r.error} == {("kc_broken", f, s) for f in (0.1, 0.25) for s in (0, 1)}


def test_seed_independent_selectors_run_once_for_all_seeds(probe_study, tmp_path, ray_tmp):
    from dataselect.core.data import load_dataset
    from dataselect.sweep.inputs import stage_features
    from dataselect.sweep.select_stage import run_select_stage

    cfg, _ = probe_study
    cfg = cfg.model_copy(update={
        "selectors": make_cfg({**study_raw(cfg.dataset.source, tmp_path, "x", ray_tmp=ray_tmp),
                               "selectors": [{"name": "herding"}, {"name": "random"}]}).selectors,
        "grid": cfg.grid.model_copy(update={"seeds": [0, 1, 2], "full_reference": False}),
    })
    table, fp, _ = stage_features(cfg, load_dataset(cfg.dataset))
    out = run_select_stage(cfg, table, features_fingerprint=fp, manifest_dir=tmp_path / "m")
    herd = {out[("herding", f, s)].path for f in (0.1, 0.25) for s in (0, 1, 2)}
    rand = {out[("random", f, s)].path for f in (0.1, 0.25) for s in (0, 1, 2)}
    assert len(herd) == 2 and len(rand) == 6  # one herding manifest per fraction
    assert len(list((tmp_path / "m").glob("*.parquet"))) == 8


def test_one_finetune_trial(sst2_dir, tmp_path, ray_tmp, ray_local):
    raw = study_raw(sst2_dir, tmp_path, "ft", ray_tmp=ray_tmp,
                    selectors=[{"name": "random"}],
                    grid={"fractions": [0.2], "seeds": [0], "full_reference": False},
                    trainer={"mode": "finetune", "model": "minilm", "epochs": 1.0, "batch_size": 16,
                             "learning_rate": 5e-5, "max_length": 48, "eval_batch_size": 64})
    raw["dataset"] = {**raw["dataset"], "pool_size": 80, "eval_size": 64}
    cfg = make_cfg(raw)
    report = run_sweep(cfg)
    df = pd.read_csv(report.parent / "results.csv")
    assert len(df) == 1 and df["status"].iloc[0] == "TERMINATED"
    row = df.iloc[0]
    assert row["n_train"] == 16 and row["mode"] == "finetune"
    sc = _tb_scalars(cfg.study_dir / "tensorboard" / row["trial"])
    assert len(sc["train/loss"]) == 1  # 16 rows, batch 16, 1 epoch
    assert sc["eval/accuracy"] == [pytest.approx(row["accuracy"])]
    assert "fine-tuned `minilm`" in report.read_text()
    assert not (cfg.study_dir / "features").exists()  # 'random' reads no features
    res = json.loads((cfg.study_dir / "trials" / row["trial"] / "result.json").read_text())
    assert np.isclose(res["result"]["accuracy"], row["accuracy"])
    # The `train` stage alone trains the same rows in the same order as the trial.
    from dataselect.sweep.stages import train_one

    alone = train_one(cfg, "random", 0.2, 0)
    assert alone["accuracy"] == row["accuracy"]
    assert alone["train_loss"] == pytest.approx(row["train_loss"], rel=1e-6)


def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "dataselect.sweep", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "--resume" in out.stdout and "--address" in out.stdout


def test_whole_pool_reference_on_fewer_seeds(sst2_dir, tmp_path, ray_tmp, ray_local):
    raw = study_raw(sst2_dir, tmp_path, "fewfull", ray_tmp=ray_tmp, selectors=[{"name": "random"}],
                    grid={"fractions": [0.25], "seeds": [3, 1], "full_reference": True,
                          "full_reference_seeds": 1})
    report = run_sweep(make_cfg(raw))
    df = pd.read_csv(report.parent / "results.csv")
    assert sorted(zip(df["selector"], df["seed"], strict=True)) == [("full", 3), ("random", 1), ("random", 3)]
    assert (df["status"] == "TERMINATED").all()
    assert "3 found of 3 expected" in report.read_text()
