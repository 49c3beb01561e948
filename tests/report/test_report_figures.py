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
