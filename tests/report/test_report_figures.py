"""The report's figures: outliers at the edge, no overlapping text at many selectors, the MDE drawn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dataselect.report.figures import (
    MIN_LIM_SPAN,
    cost_figure,
    efficiency_figure,
    forest_figure,
    highlighted,
    overlap_figure,
    robust_limits,
)

N_SEL = 14
FRACS = (0.01, 0.05)


def _summary(collapsed: float = -0.30) -> pd.DataFrame:
    """N_SEL selectors within ±2 points of random, one ``collapsed`` far below."""
    rng = np.random.default_rng(0)
    rows = []
    for frac in FRACS:
        for i in range(N_SEL):
            d = collapsed if i == 0 else float(rng.uniform(-0.02, 0.02))
            rows.append({"metric": "accuracy", "selector": f"selector_with_a_long_name_{i:02d}",
                         "fraction": frac, "delta": d, "ci_low": d - 0.01, "ci_high": d + 0.01,
                         "significant": i == 0})
        rows.append({"metric": "accuracy", "selector": "random", "fraction": frac, "delta": np.nan,
                     "ci_low": np.nan, "ci_high": np.nan, "significant": False})
    return pd.DataFrame(rows)


def _trials(summary: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in summary.itertuples():
        for seed in range(3):
            base = 0.80 + 0.02 * np.log10(r.fraction / 0.01)
            rows.append({"selector": r.selector, "fraction": r.fraction, "seed": seed,
                         "accuracy": base + (0 if np.isnan(r.delta) else r.delta) + 0.002 * seed,
                         "selection_seconds": 0.5 + len(rows) % 7})
    rows += [{"selector": "full", "fraction": 1.0, "seed": s, "accuracy": 0.9, "selection_seconds": 0.0}
             for s in range(3)]
    return pd.DataFrame(rows)


def _overlaps(boxes: list) -> list[tuple[int, int]]:
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]


def _text_boxes(fig, texts) -> list:
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    return [t.get_window_extent(r) for t in texts if t.get_visible() and t.get_text()]


def test_robust_limits_hold_the_bulk_and_leave_a_collapsed_value_out():
    v = np.array([0.80, 0.81, 0.815, 0.82, 0.83, 0.50])
    lo, hi = robust_limits(v)
    assert lo < 0.80 and hi > 0.83 and lo > 0.50
    lo, hi = robust_limits(np.full(4, 0.8))
    assert hi - lo >= MIN_LIM_SPAN  # equal values still get an axis
    assert robust_limits(np.array([np.nan])) == (-1.0, 1.0)


def test_forest_puts_a_collapsed_selector_at_the_edge_with_its_value():
    fig = forest_figure(_summary(), "accuracy", {0.01: 0.012, 0.05: 0.009})
    for ax in fig.axes[:len(FRACS)]:
        lo, hi = ax.get_xlim()
        assert lo > -30 and hi < 5  # points; the bulk is within ±3
        assert any(t.get_text() == "-30.0" for t in ax.texts)  # written beside the edge marker
        # the MDE band is drawn, ±1.2 / ±0.9 points around zero
        spans = [p for p in ax.patches if p.get_label().startswith("|Δ| < MDE")]
        assert len(spans) == 1
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert labels[-1] != "selector_with_a_long_name_00"  # sorted by Δ: the collapsed one is first (lowest)
        assert labels[0] == "selector_with_a_long_name_00"


@pytest.mark.parametrize("n_sel", [4, N_SEL, 24])
def test_overlap_heatmap_text_does_not_overlap(n_sel):
    names = [f"selector_with_a_long_name_{i:02d}" for i in range(n_sel)]
    rng = np.random.default_rng(1)
    mats = {}
    for frac in FRACS:
        m = rng.random((n_sel, n_sel))
        m = (m + m.T) / 2
        np.fill_diagonal(m, 1.0)
        mats[frac] = pd.DataFrame(m, index=names, columns=names)
    fig = overlap_figure(mats)
    heat = [ax for ax in fig.axes if ax.get_title()]
    assert len(heat) == len(FRACS)
    for ax in heat:
        assert not _overlaps(_text_boxes(fig, ax.get_xticklabels()))
        assert not _overlaps(_text_boxes(fig, ax.get_yticklabels()))
    # a panel's title never runs into the tick labels of the panel above
    above = _text_boxes(fig, heat[0].get_xticklabels())
    title = _text_boxes(fig, [heat[1].title])[0]
    assert not any(title.overlaps(b) for b in above)


def test_cost_and_efficiency_legends_do_not_overlap_the_data():
    s = _summary()
    for fig in (cost_figure(_trials(s), s, "accuracy"), efficiency_figure(_trials(s), "accuracy")):
        ax = fig.axes[0]
        leg = ax.get_legend()
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        assert not leg.get_window_extent(r).overlaps(ax.get_window_extent(r))  # beside the plot, not on it
        assert not _overlaps(_text_boxes(fig, ax.get_xticklabels()))


def test_efficiency_draws_random_band_and_whole_pool_line():
    s = _summary()
    fig = efficiency_figure(_trials(s), "accuracy")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "random, 95 % CI of the mean" in labels and any(lb.startswith("whole pool (0.900)") for lb in labels)
    assert ax.get_xscale() == "log"
    lo, hi = ax.get_ylim()
    assert lo > 0.5 and hi >= 0.9  # the collapsed selector (0.5) does not stretch the axis


def _arms27() -> pd.DataFrame:
    """27 arms at 1 % and 5 %: three collapsed at 1 % (-18 to -20 points, Holm-significant), one
    Holm winner at 5 % (+3), the rest within ±1 point and not significant."""
    rng = np.random.default_rng(3)
    rows = []
    for frac in FRACS:
        for i in range(26):
            d = float(rng.uniform(-0.01, 0.01))
            if frac == 0.01 and i < 3:
                d = -0.18 - 0.01 * i
            if frac == 0.05 and i == 5:
                d = 0.03
            rows.append({"metric": "accuracy", "selector": f"arm_{i:02d}", "fraction": frac, "delta": d,
                         "ci_low": d - 0.012, "ci_high": d + 0.012, "significant": abs(d) > 0.02})
        rows.append({"metric": "accuracy", "selector": "random", "fraction": frac, "delta": np.nan,
                     "ci_low": np.nan, "ci_high": np.nan, "significant": False})
    return pd.DataFrame(rows)


def test_highlighted_is_every_significant_arm_and_the_best_three_per_fraction():
    s = _arms27()
    got = highlighted(s, "accuracy")
    acc = s[s["selector"] != "random"]
    want = set(acc.loc[acc["significant"], "selector"])
    for _, g in acc.groupby("fraction"):
        want |= set(g.nlargest(3, "delta")["selector"])  # brute force
    assert set(got) == want and "random" not in got
    assert got[0] == "arm_05"  # by largest Δ: the +3-point winner leads
    assert 4 <= len(got) <= 3 + 3 * len(FRACS)


def test_at_27_arms_only_the_highlighted_are_named_and_no_label_covers_another():
    s = _arms27()
    named = highlighted(s, "accuracy")
    trials = _trials(s)
    for fig in (efficiency_figure(trials, "accuracy", s), cost_figure(trials, s, "accuracy")):
        ax = fig.axes[0]
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        arms = [lb for lb in legend if lb.startswith("arm_")]
        assert [lb.split(" ")[0] for lb in arms] == named  # one entry each, in order; none for the grey ones
        assert f"the other {26 - len(named)} selectors" in legend
        assert "arm_05 (Holm p < 0.05 at 5 %)" in legend
        styles = {(str(h.get_color()), h.get_marker()) for h, t in zip(ax.get_legend().legend_handles, legend,
                                                                      strict=True) if t.startswith("arm_")}
        assert len(styles) == len(named)  # no two named arms look alike
        boxes = _text_boxes(fig, ax.texts)
        assert not _overlaps(boxes)
    # the three collapsed arms share one point of the efficiency figure's floor: each written, none covered
    fig = efficiency_figure(trials, "accuracy", s)
    assert fig.axes[0].get_ylim()[0] > 0.7
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["arm_00 0.622", "arm_01 0.612", "arm_02 0.602"]


def test_cost_figure_writes_every_clipped_arm_without_overlap_at_one_cost():
    s = _arms27()
    cost = pd.DataFrame([{"selector": r.selector, "fraction": r.fraction, "cost_seconds": 5.0}
                         for r in s.itertuples() if r.selector != "random"])
    fig = cost_figure(_trials(s), s, "accuracy", cost)
    texts = [t for t in fig.axes[0].texts if t.get_text()]
    assert sorted(t.get_text() for t in texts) == ["arm_00 -18.0", "arm_01 -19.0", "arm_02 -20.0", "arm_05 +3.0"]
    assert not _overlaps(_text_boxes(fig, texts))


def test_forest_legend_gives_each_panels_own_mde():
    fig = forest_figure(_arms27(), "accuracy", {0.01: 0.036, 0.05: 0.014})
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "|Δ| < MDE (3.6 at 1 %, 1.4 at 5 %)" in legend
    assert [ax.get_title() for ax in fig.axes[:2]] == ["1 % of the pool; MDE 3.6", "5 % of the pool; MDE 1.4"]
