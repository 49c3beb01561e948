"""Cost and break-even against hand-worked numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dataselect.report.cost import (
    _examples,
    at_rows,
    breakeven_rows,
    cost_table,
    selector_feature_seconds,
)

RECIPE = {"mode": "finetune", "epochs": 1, "min_steps": 150, "batch_size": 16}
COSTS = {"pool": {"embedding": {"columns": ["embedding", "embedding_norm"], "seconds": 90.0},
                  "ngrams": {"columns": ["ngram_buckets"], "seconds": 4.0},
                  "text_metrics": {"columns": ["token_count", "flesch_reading_ease"], "seconds": 30.0}},
         "target": {"ngrams": {"columns": ["ngram_buckets"], "seconds": 0.5},
                    "embedding": {"columns": ["embedding", "embedding_norm"], "seconds": 3.0}}}


def test_examples_follow_the_trainers_step_rule():
    assert _examples(272, RECIPE) == 150 * 16  # min_steps binds
    assert _examples(5000, RECIPE) == math.ceil(5000 / 16) * 16
    assert _examples(272, {**RECIPE, "mode": "probe"}) == 272


def test_breakeven_rows_by_hand():
    # 60 s at 50 examples/s buys 3,000 examples on top of the 2,400 a 272-row trial sees:
    # 5,400 examples = 337 full steps of 16 -> at most 5,392 rows
    assert breakeven_rows(272, 60.0, 50.0, RECIPE, 27192) == 5392
    assert breakeven_rows(272, 0.0, 50.0, RECIPE, 27192) == 2400  # free rows under min_steps
    assert breakeven_rows(272, 1e6, 50.0, RECIPE, 27192) == 27192  # capped at the pool


def test_random_curve_is_linear_in_log_rows():
    curve = (np.array([100.0, 1000.0]), np.array([0.70, 0.80]))
    assert at_rows(math.sqrt(100 * 1000), curve) == pytest.approx(0.75)
    assert at_rows(50, curve) == 0.70 and at_rows(5000, curve) == 0.80


def test_feature_seconds_are_the_families_the_selector_reads():
    assert selector_feature_seconds("kcenter", {}, COSTS) == 90.0
    assert selector_feature_seconds("random", {}, COSTS) == 0.0
    assert selector_feature_seconds("dsir", {}, COSTS) == pytest.approx(4.5)  # pool + target n-grams
    assert selector_feature_seconds("stratified_coreset", {}, COSTS) == 120.0  # embedding + text metrics
    gone = {"pool": {"embedding": {"columns": ["embedding"], "seconds": None}}}
    assert selector_feature_seconds("kcenter", {}, gone) is None
    assert selector_feature_seconds("kcenter", {}, {}) is None  # not recorded: unknown, not free
    assert selector_feature_seconds("random", {}, {}) == 0.0


def test_cost_table_answers_the_break_even_question():
    rows = []
    for seed in range(3):
        rows += [{"selector": "random", "name": "random", "fraction": 0.01, "budget": 272, "seed": seed,
                  "status": "TERMINATED", "accuracy": 0.78, "selection_seconds": 0.0, "train_seconds": 48.0},
                 {"selector": "random", "name": "random", "fraction": 0.05, "budget": 1360, "seed": seed,
                  "status": "TERMINATED", "accuracy": 0.82, "selection_seconds": 0.0, "train_seconds": 48.0},
                 {"selector": "kcenter", "name": "kcenter", "fraction": 0.01, "budget": 272, "seed": seed,
                  "status": "TERMINATED", "accuracy": 0.79, "selection_seconds": 6.0, "train_seconds": 48.0}]
    rows.append({"selector": "full", "name": "full", "fraction": 1.0, "budget": 27192, "seed": 0,
                 "status": "TERMINATED", "accuracy": 0.90, "selection_seconds": 0.0, "train_seconds": 600.0})
    meta = {"config": {"trainer": RECIPE, "selectors": [{"name": "random"}, {"name": "kcenter"}]},
            "dataset": {"n_pool": 27192}, "feature_costs": COSTS}
    t = cost_table(pd.DataFrame(rows), meta, "accuracy").set_index(["selector", "fraction"])
    r = t.loc[("kcenter", 0.01)]
    # rate: random trials see 2,400 examples in 48 s = 50 ex/s; kcenter adds 90 + 6 = 96 s
    assert r["cost_seconds"] == 96.0
    assert r["breakeven_rows"] == breakeven_rows(272, 96.0, 50.0, RECIPE, 27192) == 7200
    # random at 7,200 rows: between 1,360 (0.82) and 27,192 (0.90), linear in log rows
    want = 0.82 + 0.08 * math.log(7200 / 1360) / math.log(27192 / 1360)
    assert r["random_at_breakeven"] == pytest.approx(want)
    assert r["mean"] == pytest.approx(0.79) and not r["worth_it"]
