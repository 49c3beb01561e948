"""Report statistics and select-stage arithmetic against direct computations (no Ray)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dataselect.report import format_mean_std, summarize
from dataselect.sweep.select_stage import budget_for, grid_specs
from dataselect.sweep.study import parse_study


def _frame(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for sel, shift in (("random", 0.0), ("kcenter", 0.02), ("full", 0.1)):
        for frac in ((1.0,) if sel == "full" else (0.1, 0.2)):
            for seed in range(4):
                rows.append({"selector": sel, "fraction": frac, "seed": seed, "status": "TERMINATED",
                             "accuracy": 0.7 + shift + rng.normal(0, 0.01)})
    rows.append({"selector": "kcenter", "fraction": 0.1, "seed": 9, "status": "ERROR", "accuracy": np.nan})
    return pd.DataFrame(rows)


def _paired_t(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test p-value from the textbook formula."""
    from scipy.stats import t

    d = a - b
    stat = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    return float(2 * t.sf(abs(stat), len(d) - 1))


@pytest.mark.parametrize("seed", range(3))
def test_summary_matches_direct_computation(seed):
    df = _frame(np.random.default_rng(seed))
    s = summarize(df, "accuracy").set_index(["selector", "fraction"])
    ok = df[df["status"] == "TERMINATED"]
    k = ok[(ok["selector"] == "kcenter") & (ok["fraction"] == 0.1)].sort_values("seed")["accuracy"].to_numpy()
    r = ok[(ok["selector"] == "random") & (ok["fraction"] == 0.1)].sort_values("seed")["accuracy"].to_numpy()
    row = s.loc[("kcenter", 0.1)]
    assert row["n_seeds"] == 4 and row["n_pairs"] == 4  # the errored seed-9 trial is left out
    assert row["mean"] == pytest.approx(k.mean()) and row["std"] == pytest.approx(k.std(ddof=1))
    assert row["delta"] == pytest.approx((k - r).mean())
    assert row["p_t"] == pytest.approx(_paired_t(k, r))
    assert np.isnan(s.loc[("random", 0.1), "delta"]) and np.isnan(s.loc[("full", 1.0), "p_t"])
    assert np.isnan(row["p_value"]) and not row["significant"]  # no per-row predictions given


def test_single_pair_gives_no_p_value():
    df = _frame(np.random.default_rng(0))
    df = df[(df["seed"] == 0) | (df["selector"] == "random")]
    row = summarize(df, "accuracy").set_index(["selector", "fraction"]).loc[("kcenter", 0.2)]
    assert row["n_pairs"] == 1 and np.isfinite(row["delta"]) and np.isnan(row["p_t"])
    assert format_mean_std(row["mean"], row["std"]).endswith("± n/a")


def test_budget_rounding_and_grid():
    assert budget_for(0.1, 240) == 24 and budget_for(0.001, 240) == 1 and budget_for(1.0, 7) == 7
    assert budget_for(0.25, 10) == 2  # round half to even, as Python's round
    cfg = parse_study({"name": "g", "selectors": [{"name": "random"}, {"name": "kcenter", "label": "kc"}],
                        "grid": {"fractions": [0.1, 0.5]}}, check_paths=False)
    cells = [(s.key, f) for s, f in grid_specs(cfg)]
    assert cells == [("random", 0.1), ("random", 0.5), ("kc", 0.1), ("kc", 0.5), ("full", 1.0)]


def test_trial_runs_limit_only_the_whole_pool_seeds():
    from dataselect.sweep.run import trial_runs

    cfg = parse_study({"name": "g", "selectors": [{"name": "random"}],
                        "grid": {"fractions": [0.1, 0.5], "seeds": [4, 2, 9], "full_reference_seeds": 2}},
                       check_paths=False)
    cells = [{"selector": s.key, "fraction": f} for s, f in grid_specs(cfg)]
    runs = [(c["selector"], c["fraction"], sd) for c, sd in trial_runs(cfg, cells)]
    assert runs == [("random", 0.1, 4), ("random", 0.1, 2), ("random", 0.1, 9), ("random", 0.5, 4),
                    ("random", 0.5, 2), ("random", 0.5, 9), ("full", 1.0, 4), ("full", 1.0, 2)]
    everyone = cfg.model_copy(update={"grid": cfg.grid.model_copy(update={"full_reference_seeds": None})})
    assert len(trial_runs(everyone, cells)) == 9


def test_holm_family_of_the_whole_study_spans_both_fractions():
    """``report.holm: study``: one Holm family over every comparison, not one per fraction."""
    from dataselect.report.stats import holm
    from dataselect.report.tables import summary_table

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    rows, preds = [], {}
    for frac in (0.01, 0.05):
        for sel, acc in (("random", 0.8), ("a", 0.83), ("b", 0.81)):
            for seed in range(4):
                t = f"{sel}_{frac}_{seed}"
                p = np.where(rng.random(400) < acc, y, 1 - y)
                preds[t] = pd.DataFrame({"id": np.arange(400), "label": y, "pred": p})
                rows.append({"trial": t, "selector": sel, "fraction": frac, "seed": seed,
                             "status": "TERMINATED", "accuracy": float((p == y).mean()),
                             "macro_f1": 0.0, "precision": 0.0, "recall": 0.0})
    df = pd.DataFrame(rows)
    per = summary_table(df, preds, 2).query("metric == 'accuracy' and selector != 'random'")
    whole = summary_table(df, preds, 2, "study").query("metric == 'accuracy' and selector != 'random'")
    np.testing.assert_allclose(whole["p_holm"], holm(whole["p_value"].to_numpy()))
    for frac in (0.01, 0.05):
        g = per[per["fraction"] == frac]
        np.testing.assert_allclose(g["p_holm"], holm(g["p_value"].to_numpy()))
    assert (whole["p_holm"].to_numpy() >= per["p_holm"].to_numpy()).all()


def test_the_conclusion_names_the_holm_family_it_used():
    from dataselect.report.tables import conclusions

    rows = [{"metric": "accuracy", "selector": s, "fraction": f, "delta": d, "ci_low": d - 0.01,
             "ci_high": d + 0.01, "p_value": 0.5, "significant": False}
            for f in (0.01, 0.05) for s, d in (("a", 0.01), ("b", -0.01), ("c", 0.0))]
    summary = pd.DataFrame(rows)
    per = conclusions(summary, {0.01: 10, 0.05: 50})
    whole = conclusions(summary, {0.01: 10, 0.05: 50}, holm_family="study")
    assert "after Holm correction (3 comparisons)" in per[0]
    assert "after Holm correction (6 comparisons over all fractions)" in whole[1]
    assert "the best, `a`, is +1.0 points [+0.0, +2.0]" in whole[0]


def _pred_frames(rng: np.random.Generator, df: pd.DataFrame, n: int = 300) -> tuple[pd.DataFrame, dict]:
    """Per-row predictions for every finished trial of ``df`` (kcenter right more often), and the
    frame with trial names and each trial's metrics recomputed from its predictions."""
    from dataselect.train.metrics import classification_metrics

    y = rng.integers(0, 2, n)
    df = df.copy()
    df["trial"] = [f"{r.selector}-{r.fraction:g}-{r.seed}" for r in df.itertuples()]
    preds = {}
    for i, r in df.iterrows():
        if r["status"] != "TERMINATED":
            continue
        acc = 0.8 if r["selector"] == "kcenter" else 0.75
        p = np.where(rng.random(n) < acc, y, 1 - y)
        preds[r["trial"]] = pd.DataFrame({"id": np.arange(n), "label": y, "pred": p})
        for m, v in classification_metrics(y, p, 2).items():
            df.loc[i, m] = v
    return df, preds


def test_predictions_in_another_row_order_are_realigned_not_dropped():
    from dataselect.report.tables import summary_table

    df, preds = _pred_frames(np.random.default_rng(1), _frame(np.random.default_rng(1)))
    want = summary_table(df, preds, 2).set_index(["metric", "selector", "fraction"])
    shuffled = dict(preds)
    t = "kcenter-0.1-2"
    shuffled[t] = preds[t].sample(frac=1.0, random_state=0)  # same ids, other order
    got = summary_table(df, shuffled, 2)
    assert got.attrs["left_out"] == {}
    got = got.set_index(["metric", "selector", "fraction"])
    cols = ["delta", "ci_low", "ci_high", "p_value", "n_pairs"]
    pd.testing.assert_frame_equal(got[cols], want[cols])
    assert got.loc[("accuracy", "kcenter", 0.1), "n_pairs"] == 4


def test_a_trial_without_predictions_leaves_its_cell_on_one_seed_set_and_is_named():
    """Seed 2 of kcenter at 10 % lost its predictions: Δ, p_t and the interval all use seeds
    0, 1, 3 (no row mixes 4 and 3 seeds), the trial is named with its reason, and the cell's
    seeds are listed."""
    from dataselect.report.tables import summary_table, uneven_seeds

    df, preds = _pred_frames(np.random.default_rng(2), _frame(np.random.default_rng(2)))
    del preds["kcenter-0.1-2"]
    s = summary_table(df, preds, 2)
    assert s.attrs["left_out"] == {"kcenter-0.1-2": "no per-row predictions"}
    row = s.set_index(["metric", "selector", "fraction"]).loc[("accuracy", "kcenter", 0.1)]
    ok = df[df["status"] == "TERMINATED"].set_index(["selector", "fraction", "seed"])["accuracy"]
    k = np.array([ok[("kcenter", 0.1, sd)] for sd in (0, 1, 3)])
    r = np.array([ok[("random", 0.1, sd)] for sd in (0, 1, 3)])
    assert row["n_pairs"] == 3 and row["seeds"] == "0,1,3"
    assert row["delta"] == pytest.approx((k - r).mean())
    assert row["p_t"] == pytest.approx(_paired_t(k, r))
    assert uneven_seeds(s, [0, 1, 2, 3]) == ["| kcenter | 10 % | 0,1,3 |"]


def test_a_nan_metric_in_a_random_trial_drops_that_seed_only():
    df = _frame(np.random.default_rng(3))
    i = df.index[(df["selector"] == "random") & (df["fraction"] == 0.1) & (df["seed"] == 1)][0]
    df.loc[i, "accuracy"] = np.nan
    row = summarize(df, "accuracy").set_index(["selector", "fraction"]).loc[("kcenter", 0.1)]
    ok = df[df["status"] == "TERMINATED"].set_index(["selector", "fraction", "seed"])["accuracy"]
    d = [ok[("kcenter", 0.1, sd)] - ok[("random", 0.1, sd)] for sd in (0, 2, 3)]
    assert row["n_pairs"] == 3 and row["delta"] == pytest.approx(np.mean(d))
    rand = summarize(df, "accuracy").set_index(["selector", "fraction"]).loc[("random", 0.1)]
    assert np.isfinite(rand["mean"]) and rand["n_seeds"] == 3


def test_one_paired_seed_is_in_no_holm_family_and_never_significant():
    """One seed pair with predictions: Δ is shown, but there is no p-value, it does not count
    in Holm's m, and it is never bold."""
    from dataselect.report.tables import summary_table

    df, preds = _pred_frames(np.random.default_rng(4), _frame(np.random.default_rng(4)))
    for sd in (1, 2, 3):
        del preds[f"kcenter-0.2-{sd}"]
    s = summary_table(df, preds, 2).set_index(["metric", "selector", "fraction"])
    row = s.loc[("accuracy", "kcenter", 0.2)]
    assert row["n_pairs"] == 1 and np.isfinite(row["delta"])
    assert np.isnan(row["p_value"]) and np.isnan(row["p_holm"]) and not row["significant"]
    assert np.isnan(row["ci_low"])
