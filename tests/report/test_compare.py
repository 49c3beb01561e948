"""Two studies side by side: verdicts, agreement, rank correlation, and the CLI's errors."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from dataselect.cli import app
from dataselect.report.compare import compare_summaries, rank_agreement, verdict


def _summary(rows: list[tuple[str, float, float, float]]) -> pd.DataFrame:
    """(selector, fraction, delta, p_holm) -> a summary.csv frame (interval ±1 point)."""
    return pd.DataFrame([{"metric": "accuracy", "selector": s, "fraction": f, "delta": d, "ci_low": d - 0.01,
                          "ci_high": d + 0.01, "p_holm": p} for s, f, d, p in rows])


def test_verdicts_follow_holm_and_the_sign():
    assert verdict(0.02, 0.01) == "better" and verdict(-0.02, 0.049) == "worse"
    assert verdict(0.05, 0.05) == "neither" and verdict(0.05, float("nan")) == "neither"


def test_rows_join_on_selector_and_fraction_and_disagreements_are_found():
    a = _summary([("x", 0.01, 0.03, 0.01), ("y", 0.01, -0.02, 0.3), ("z", 0.01, -0.05, 0.001),
                  ("only_a", 0.01, 0.0, 1.0)])
    b = _summary([("x", 0.01, 0.01, 0.4), ("y", 0.01, 0.01, 0.5), ("z", 0.01, -0.04, 0.002)])
    t = compare_summaries(a, b).set_index("selector")
    assert list(t.index) == ["x", "y", "z"]  # sorted by the second study's Δ; only_a dropped
    assert t.loc["x", ["verdict_a", "verdict_b"]].tolist() == ["better", "neither"]
    assert t["agree"].tolist() == [False, True, True]
    assert t["same_sign"].tolist() == [True, False, True]


def test_rank_agreement_is_spearman_per_fraction():
    a = _summary([(s, f, d, 1.0) for f in (0.01, 0.05) for s, d in (("p", 0.1), ("q", 0.2), ("r", 0.3))])
    b = _summary([(s, 0.01, d, 1.0) for s, d in (("p", 1.0), ("q", 2.0), ("r", 9.0))]
                 + [(s, 0.05, d, 1.0) for s, d in (("p", 3.0), ("q", 2.0), ("r", 1.0))])
    rho = rank_agreement(compare_summaries(a, b))
    assert rho[0.01] == pytest.approx(1.0) and rho[0.05] == pytest.approx(-1.0)


def test_cli_writes_the_table_and_names_a_missing_summary(tmp_path):
    for name, rows in (("probe", [("x", 0.01, 0.03, 0.01)]), ("ft", [("x", 0.01, -0.03, 0.01)])):
        (tmp_path / name / "report").mkdir(parents=True)
        _summary(rows).to_csv(tmp_path / name / "report" / "summary.csv", index=False)
    out = tmp_path / "regimes.md"
    r = CliRunner().invoke(app, ["compare", str(tmp_path / "probe"), str(tmp_path / "ft"), "--out", str(out)])
    assert r.exit_code == 0 and "1 of 1 verdicts differ" in r.output
    text = out.read_text()
    assert "**0 of 1 selector × fraction verdicts agree**" in text and "| 1 % | x | +3.0 [+2.0, +4.0] | better" in text
    assert pd.read_csv(out.with_suffix(".csv"))["verdict_b"].tolist() == ["worse"]
    bad = CliRunner().invoke(app, ["compare", str(tmp_path / "probe"), str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "nope/report/summary.csv" in bad.output and "Traceback" not in bad.output
