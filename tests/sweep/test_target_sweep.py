"""Target-aware selection through a real sweep: holdout target, transductive target, manifest keys."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from dataselect.sweep.run import run_sweep
from dataselect.sweep.select_stage import run_select_stage

from .conftest import make_cfg, study_raw

pytestmark = pytest.mark.slow

AWARE = [{"name": "dsir"}, {"name": "density_ratio", "params": {"n_folds": 3}},
         {"name": "gradient_match", "params": {"steps": 50}}, {"name": "metric_match"}]


def _raw(sst2_dir, out, name, ray_tmp, **over):
    raw = study_raw(sst2_dir, out, name, ray_tmp=ray_tmp, selectors=[{"name": "random"}, *AWARE],
                    grid={"fractions": [0.1], "seeds": [0, 1], "full_reference": False})
    raw["dataset"] = {**raw["dataset"], "pool_size": 600, "eval_size": 200}
    raw["features"] = {**raw["features"], "ngrams": True, "text_metrics": True}
    raw.update(over)
    return raw


@pytest.fixture(scope="module")
def holdout_study(sst2_dir, tmp_path_factory, ray_tmp, ray_local):
    raw = _raw(sst2_dir, tmp_path_factory.mktemp("studies"), "tgt", ray_tmp,
               target={"holdout": {"sentences": 120, "seed": 1}})
    raw["dataset"] = {**raw["dataset"], "eval_holdout": {"sentences": 150}}
    cfg = make_cfg(raw)
    return cfg, run_sweep(cfg)


def test_the_report_says_what_the_holdout_took_and_how_far_each_subset_moved(holdout_study):
    cfg, report = holdout_study
    df = pd.read_csv(report.parent / "results.csv")
    assert (df["status"] == "TERMINATED").all() and len(df) == 10
    assert set(df.loc[df["reads_target"], "selector"]) == {"dsir", "density_ratio", "gradient_match",
                                                           "metric_match"}
    text = report.read_text()
    assert "- Holdout: 270 whole train sentences held out (150 to the eval set, 120 as the target)" in text
    assert "- Target: 120 rows, whole train sentences held out of the pool, never trained on" in text
    assert "`gradient_match`: target_labels predicted by the warmed-up head (120 target rows)" in text
    assert "†" not in text  # not transductive
    kept = pd.read_csv(report.parent / "kept.csv").set_index("selector")
    assert kept["target_auc"].between(0, 1).all() and kept["eval_auc"].between(0, 1).all()
    # metric_match draws whole-sentence lengths from a phrase pool: closer to the target than random
    target_words = pd.read_parquet(cfg.study_dir / "inputs" / "target" / "target.parquet")["n_words"].mean()
    assert abs(kept.loc["metric_match", "mean_words"] - target_words) < abs(
        kept.loc["random", "mean_words"] - target_words)
    study = json.loads((cfg.study_dir / "study.json").read_text())
    assert study["target"]["source"] == "holdout" and study["holdout"]["eval_sentences"] == 150
    assert study["dataset"]["n_eval"] == 200  # eval_size subsamples validation + held-out


def test_target_manifests_are_keyed_by_the_target_too(holdout_study, tmp_path, ray_tmp):
    cfg, _ = holdout_study
    rng = np.random.default_rng(0)
    n, m = 200, 40
    emb = rng.normal(size=(n, 4)).astype(np.float32)
    table = {"id": np.arange(n), "label": rng.integers(0, 2, n), "embedding_norm": emb,
             "embedding": emb, "token_count": rng.integers(1, 30, n)}
    ngr = np.empty(n, dtype=object)
    ngr[:] = [rng.integers(0, 50, 5) for _ in range(n)]
    table["ngram_buckets"] = ngr

    def target(shift):
        t = {"id": np.arange(m), "label": np.full(m, -1), "token_count": rng.integers(10, 30, m),
             "embedding_norm": rng.normal(size=(m, 4)).astype(np.float32) + shift}
        t["embedding"] = t["embedding_norm"]
        g = np.empty(m, dtype=object)
        g[:] = [rng.integers(0, 20, 5) for _ in range(m)]
        t["ngram_buckets"] = g
        return t

    small = cfg.model_copy(update={"selectors": make_cfg(_raw(cfg.dataset.source, tmp_path, "x", ray_tmp,
                                                              target={"split": "validation"})).selectors})
    a = run_select_stage(small, table, features_fingerprint="fp", manifest_dir=tmp_path / "m", target=target(0.0))
    b = run_select_stage(small, table, features_fingerprint="fp", manifest_dir=tmp_path / "m", target=target(1.0))
    for cell, r in a.items():
        assert r.error is None, r.error
        if cell[0] == "random":
            assert b[cell].path == r.path and b[cell].reused  # target-blind: same manifest
        else:
            assert b[cell].path != r.path  # another target, another selection


def test_a_transductive_target_is_marked_in_console_and_report(sst2_dir, tmp_path, ray_tmp, ray_local, caplog):
    raw = _raw(sst2_dir, tmp_path, "trans", ray_tmp, target={"split": "validation", "labelled": 20},
               selectors=[{"name": "random"}, {"name": "gradient_match", "params": {"steps": 50}}])
    cfg = make_cfg(raw)
    with caplog.at_level(logging.WARNING, logger="dataselect.sweep.select_stage"):
        report = run_sweep(cfg)
    assert ("select stage: gradient_match read eval texts (the target shares texts with the eval set): "
            "their selections are transductive") in caplog.text
    text = report.read_text()
    assert "split validation, and " in text and " of its rows are eval texts: **transductive**" in text
    # of the 20 labelled target rows, those that are also rows of this 200-row eval sample
    import json
    given = json.loads((cfg.study_dir / "study.json").read_text())["target"]["eval_labels"]
    assert 0 < given <= 20 and f"and {given} eval labels are handed to them" in caplog.text
    assert f"**{given:,} eval labels**" in text and "transductive, with eval labels" in text
    assert "| gradient_match † | 0.1 |" in text and "| random | 0.1 |" in text
    assert "given (20 labelled target rows)" in text
