"""write_report on a hand-built study folder with known answers (no Ray, no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dataselect.report import summary_table, write_report
from dataselect.sweep.trial import write_trial_files
from dataselect.train import EvalPredictions

M, SEEDS, N_POOL = 600, (0, 1, 2, 3, 4), 1000


def _trial(study: Path, name: str, selector: str, fraction: float, seed: int, y: np.ndarray,
           pred: np.ndarray, kept: pd.DataFrame) -> None:
    tdir = study / "tune" / "s" / name
    tdir.mkdir(parents=True)
    acc = float((pred == y).mean())
    (tdir / "params.json").write_text(json.dumps({"cell": {"selector": selector, "name": selector,
                                                           "params": {}, "fraction": fraction},
                                                  "seed": seed}))
    counts = np.bincount(kept["label"], minlength=2).tolist()
    (tdir / "result.json").write_text(json.dumps({
        "accuracy": acc, "macro_f1": acc, "precision": acc, "recall": acc, "budget": len(kept),
        "n_train": len(kept), "class_counts": counts, "missing_classes": [],
        "selection_seconds": 0.01}) + "\n")
    evalf = pd.DataFrame({"id": np.arange(M), "label": y})
    out = study / "trials" / name
    out.mkdir(parents=True)
    write_trial_files(out, "h", evalf, EvalPredictions(pred, None), kept)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """random, `better` (+3 % rows right), `same` (random's predictions), `dup` (random's subset)."""
    study = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, M)
    pool = pd.DataFrame({"id": np.arange(N_POOL), "label": rng.integers(0, 2, N_POOL),
                         "n_words": rng.integers(1, 30, N_POOL)})
    pool["original_label"] = pool["label"]
    flipped = np.arange(0, N_POOL, 5)  # 20 % of the pool
    pool.loc[flipped, "label"] = 1 - pool.loc[flipped, "original_label"]
    clean = pool[pool["label"] == pool["original_label"]]
    for seed in SEEDS:
        base = np.where(rng.random(M) < 0.75, y, 1 - y)
        better = base.copy()
        fix = np.flatnonzero(base != y)[: int(0.03 * M)]
        better[fix] = y[fix]
        rand_rows = pool.sample(100, random_state=seed)
        _trial(study, f"random_s{seed}", "random", 0.1, seed, y, base, rand_rows)
        _trial(study, f"same_s{seed}", "same", 0.1, seed, y, base.copy(), pool.sample(100, random_state=50 + seed))
        _trial(study, f"better_s{seed}", "better", 0.1, seed, y, better, clean.head(100))
        _trial(study, f"dup_s{seed}", "dup", 0.1, seed, y, np.where(rng.random(M) < 0.75, y, 1 - y), rand_rows)
    (study / "study.json").write_text(json.dumps({
        "name": "s", "n_trials": 20, "config": {"grid": {"seeds": list(SEEDS), "fractions": [0.1]},
                                                "trainer": {"mode": "probe", "probe": "logreg"}},
        "dataset": {"n_pool": N_POOL, "n_eval": M, "label_names": ["neg", "pos"]},
        "label_noise": {"rate": 0.2, "seed": 0, "kind": "uniform", "n_flipped": len(flipped)}}))
    return study, write_report(study)


def test_summary_csv_has_the_issue_columns_and_known_answers(study):
    path, report = study
    s = pd.read_csv(report.parent / "summary.csv")
    assert {"metric", "selector", "fraction", "n_seeds", "mean", "std", "delta", "ci_low", "ci_high",
            "p_t", "p_value", "p_holm", "significant", "se", "df"} <= set(s.columns)
    acc = s[s["metric"] == "accuracy"].set_index("selector")
    assert acc.loc["better", "significant"] and acc.loc["better", "delta"] == pytest.approx(0.03, abs=0.002)
    assert acc.loc["better", "ci_low"] <= acc.loc["better", "delta"] <= acc.loc["better", "ci_high"]
    assert acc.loc["same", "delta"] == 0 and acc.loc["same", "p_value"] == 1 and not acc.loc["same", "significant"]
    assert acc.loc["better", "p_holm"] >= acc.loc["better", "p_value"]
    assert len(s) == 4 * 4  # 4 metrics x (random + 3 selectors)


def test_report_opens_with_the_conclusion(study):
    _, report = study
    text = report.read_text()
    head = text.split("## Setup")[0]
    assert "**Conclusion.**" in head and "1 of 3 selectors beat random" in head and "`better` +3.0" in head
    assert "Holm 1979" in text and "Satterthwaite" in text and "Dror et al." in text
    assert "Power (accuracy, the primary metric" in text
    assert "seeds" in text.split("Power (accuracy")[1].split("##")[0]


def test_kept_table_counts_flipped_rows(study):
    _, report = study
    kept = pd.read_csv(report.parent / "kept.csv").set_index("selector")
    assert kept.loc["better", "flipped_kept"] == 0 and kept.loc["better", "flipped_share"] == 0
    # removed 900 rows held all 200 flips: precision 200/900, recall 1
    assert kept.loc["better", "removal_precision"] == pytest.approx(200 / 900)
    assert kept.loc["better", "removal_recall"] == 1.0
    assert 0.1 < kept.loc["random", "flipped_share"] < 0.3
    assert kept.loc["random", "share[neg]"] + kept.loc["random", "share[pos]"] == pytest.approx(1)
    text = report.read_text()
    assert "## What was kept" in text and "200 of 1,000 pool labels flipped" in text


def test_identical_subsets_are_flagged(study):
    _, report = study
    text = report.read_text()
    assert "| 0.1 | dup | random | 1.000 (identical) |" in text
    ov = pd.read_csv(report.parent / "overlap.csv", index_col=[0, 1])
    assert ov.loc[(0.1, "dup"), "random"] == 1.0 and ov.loc[(0.1, "better"), "better"] == 1.0
    assert (report.parent / "overlap.png").read_bytes()[:4] == b"\x89PNG"


def test_rebuild_is_identical(study):
    path, report = study
    first = (report.parent / "summary.csv").read_bytes()
    write_report(path)
    assert (report.parent / "summary.csv").read_bytes() == first


def test_summary_intervals_are_the_paired_difference_of_the_trials_predictions(study):
    """The table is wired to the statistic: recompute one row from the trials' own predictions."""
    path, _ = study
    from dataselect.report import collect_results, load_trial_frames
    from dataselect.report.stats import paired_difference

    df = collect_results(path / "tune" / "s")
    preds = load_trial_frames(path, df["trial"].tolist(), "predictions.parquet")
    s = summary_table(df, preds, 2).set_index(["metric", "selector"])
    ok = df[df["status"] == "TERMINATED"]

    def arm(sel):
        g = ok[ok["selector"] == sel].sort_values("seed")
        return np.stack([preds[t]["pred"].to_numpy() for t in g["trial"]])

    y = preds[ok["trial"].iloc[0]]["label"].to_numpy()
    for metric in ("accuracy", "macro_f1"):
        r = paired_difference(y, arm("better"), arm("random"), 2, metric)
        row = s.loc[(metric, "better")]
        assert (row["delta"], row["ci_low"], row["ci_high"], row["p_value"]) == pytest.approx(
            (r.delta, r.ci_low, r.ci_high, r.p_value))
