"""Target-support warnings reach the console once per selector and kind, and the report lists
them per selector with how many selections carried them (issue 34 item 1)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from dataselect.core.config import SelectorSpec
from dataselect.report.markdown import support_warnings
from dataselect.selectors.dsir import PAPER
from dataselect.selectors.registry import get_selector
from dataselect.sweep.select_stage import _Job, _write_job

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "selectors"))
from two_domain import two_domain  # noqa: E402


def test_a_selection_driven_by_length_warns_once_per_selector_on_the_console(tmp_path, caplog):
    feats, _ = two_domain(n_target=100)  # the paper DSIR keeps short rows here
    selector = get_selector("dsir", **PAPER)
    results: dict = {}
    warned: set = set()
    n = len(feats["label"])
    ids = np.arange(n, dtype=np.int64)
    with caplog.at_level(logging.WARNING, logger="dataselect.sweep.select_stage"):
        for seed in (0, 1):
            sel = selector.select(feats, 200, seed)
            job = _Job(SelectorSpec(name="dsir", params=PAPER), selector, selector.params(), seed, "fp",
                       outputs={200: (tmp_path / f"s{seed}.parquet", [("dsir", 0.05, seed)]),
                                100: (tmp_path / f"t{seed}.parquet", [("dsir", 0.025, seed)])})
            _write_job(results, job, {"selection": sel, "seconds": 0.1}, ids, warned)
    lines = [r.getMessage() for r in caplog.records if "driven by length" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("selector dsir (budget 200, seed 0): driven by length")
    assert len(results) == 4 and all(r.error is None for r in results.values())


def test_the_report_counts_each_kind_of_warning_per_selector():
    warn = {"warnings": ["driven by length: kept 5.0 n-grams"]}
    ok = pd.DataFrame({
        "selector": ["dsir"] * 3 + ["kcenter"],
        "fraction": [0.01, 0.01, 0.05, 0.01],
        "selection_info": [json.dumps(warn), json.dumps({"warnings": []}),
                           json.dumps({"classes": {"0": warn, "1": {"warnings": ["driven by one class: x"]}}}),
                           json.dumps({})],
    })
    got = support_warnings(ok, "dsir")
    assert got == ["2 of 3 selections (1 %, 5 %); first: driven by length: kept 5.0 n-grams",
                   "1 of 3 selections (5 %); first: driven by one class: x"]
    assert support_warnings(ok, "kcenter") == []
