"""The validation holdout through the trainers, a real sweep and the report (issue 36 item 8)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dataselect.core.config import DatasetConfig, HoldoutConfig, TrainerConfig
from dataselect.core.data import load_dataset
from dataselect.report.validation import contenders, ranking
from dataselect.sweep.run import run_sweep
from dataselect.train import PREDICTIONS_KEY, VALIDATION_KEY, finetune

from .conftest import make_cfg, study_raw


def _accuracy(frame: pd.DataFrame) -> float:
    return float((frame["pred"] == frame["label"]).mean())


def test_finetune_scores_the_validation_rows_without_touching_the_eval_result(sst2_dir):
    """Same seed, with and without validation rows: identical eval predictions, and the
    validation metrics are those of the validation predictions."""
    ds = load_dataset(DatasetConfig(source=str(sst2_dir), pool_size=300, eval_size=40,
                                    validation_holdout=HoldoutConfig(sentences=30, seed=4)))
    cfg = TrainerConfig(model="minilm", epochs=1, min_steps=3, batch_size=16, max_length=32, device="cpu",
                        precision="fp32")
    train = ds.train.head(48)
    plain = finetune(train, ds.eval, cfg, num_labels=2, seed=0, progress=False)
    both = finetune(train, ds.eval, cfg, num_labels=2, seed=0, progress=False, validation_df=ds.validation)
    np.testing.assert_array_equal(plain[PREDICTIONS_KEY].pred, both[PREDICTIONS_KEY].pred)
    assert plain["accuracy"] == both["accuracy"] and VALIDATION_KEY not in plain
    vpred = both[VALIDATION_KEY].pred
    assert len(vpred) == both["n_validation"] == 30
    assert both["validation_accuracy"] == pytest.approx(float((vpred == ds.validation["label"].to_numpy()).mean()))


@pytest.mark.slow
def test_a_sweep_scores_every_trial_on_the_validation_rows_and_ranks_arms_on_them(sst2_dir, tmp_path, ray_tmp,
                                                                                  ray_local):
    raw = study_raw(sst2_dir, tmp_path, "val", ray_tmp=ray_tmp,
                    grid={"fractions": [0.1], "seeds": [0, 1, 2], "full_reference": False},
                    selectors=[{"name": "random"}, {"name": "kcenter"}, {"name": "herding"}])
    raw["dataset"] = {**raw["dataset"], "pool_size": 600, "eval_size": 200,
                      "validation_holdout": {"sentences": 120, "seed": 3}}
    cfg = make_cfg(raw)
    report = run_sweep(cfg)
    study = cfg.study_dir
    rows = pd.read_parquet(study / "inputs" / "validation.parquet")
    assert len(rows) == 120 and (rows["id"] < 0).all()
    evalf = pd.read_parquet(study / "inputs" / "eval.parquet")
    assert not set(rows["id"]) & set(evalf["id"])
    df = pd.read_csv(report.parent / "results.csv")
    assert (df["status"] == "TERMINATED").all() and len(df) == 9
    preds = {}
    for t, acc in zip(df["trial"], df["validation_accuracy"], strict=True):
        p = pd.read_parquet(study / "trials" / t / "validation_predictions.parquet")
        assert p["id"].tolist() == rows["id"].tolist() and p["label"].tolist() == rows["label"].tolist()
        assert acc == pytest.approx(_accuracy(p))
        preds[t] = p
    # Δ on the validation rows: the seed-paired mean of accuracy differences, by hand
    summary = pd.read_csv(report.parent / "validation_summary.csv")
    acc = summary[summary["metric"] == "accuracy"].set_index("selector")
    by = df.set_index(["selector", "seed"])["trial"]
    for sel in ("kcenter", "herding"):
        want = np.mean([_accuracy(preds[by[(sel, s)]]) - _accuracy(preds[by[("random", s)]]) for s in (0, 1, 2)])
        assert acc.loc[sel, "delta"] == pytest.approx(want)
        assert acc.loc[sel, "ci_low"] <= acc.loc[sel, "delta"] <= acc.loc[sel, "ci_high"]
    order = ranking(summary, "accuracy")
    assert order["selector"].tolist() == acc.drop("random")["delta"].sort_values(ascending=False).index.tolist()
    assert contenders(summary, 1) == {0.1: order["selector"].head(1).tolist()}
    text = report.read_text()
    assert "### Ranking on the validation holdout" in text and "120 validation rows" in text
    assert ", 120 as the validation set)" in text
