"""Select stage: prefix-consistent selectors run once per seed at the largest
budget; the smaller manifests, cut from that run, equal separate runs."""

from __future__ import annotations

import numpy as np
import pytest

from dataselect.core.manifest import read_manifest, write_manifest
from dataselect.selectors import get_selector
from dataselect.selectors.base import own_stream
from dataselect.sweep.select_stage import PROVENANCE_KEYS, SLICED_KEY, budget_for, run_select_stage

from .conftest import make_cfg, study_raw

N = 200
FRACTIONS = [0.05, 0.1, 0.2, 0.4]
SEEDS = [0, 1]
SELECTORS = [
    {"name": "herding"},
    {"name": "kcenter", "params": {"metric": "cosine"}},
    # Needs 12 rows: the 5 % budget (10) fails, cut or run alone.
    {"name": "kcenter", "label": "kcenter-init", "params": {"initial": list(range(12))}},
    {"name": "random"},
    # The band holds ~30 % of the rows: the 40 % run fails, the smaller budgets must not.
    {"name": "perplexity", "label": "ppl-ranked",
     "params": {"q_low": 0.0, "q_high": 0.3, "rank_by": "perplexity"}},
    {"name": "herding", "label": "herding-pc", "params": {"per_class": "proportional"}},
]


def _features() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N, 8)).astype(np.float32)
    return {"id": rng.permutation(np.arange(1000, 1000 + N)).astype(np.int64),  # ids are not positions
            "embedding": x, "label": (x[:, 0] > 0).astype(np.int64),
            "perplexity": rng.lognormal(size=N)}


@pytest.fixture(scope="module")
def stage(sst2_dir, tmp_path_factory, ray_tmp, ray_local):
    out = tmp_path_factory.mktemp("prefix")
    raw = study_raw(sst2_dir, out, "prefix", ray_tmp=ray_tmp, selectors=SELECTORS,
                    grid={"fractions": FRACTIONS, "seeds": SEEDS, "full_reference": False})
    raw["features"] = {**raw["features"], "perplexity_model": "standin:qwen3"}  # the features come in below
    cfg = make_cfg(raw)
    feats = _features()
    res = run_select_stage(cfg, feats, features_fingerprint="fp-test", manifest_dir=out / "m")
    return cfg, feats, res, out


def _separate(cfg, feats, key, frac, seed, tmp_path):
    """The cell's manifest (or error) from its own select() call, written the same way."""
    spec = next(s for s in cfg.selectors if s.key == key)
    selector = get_selector(spec.name, **dict(spec.params))
    budget, run_seed = budget_for(frac, N), seed if selector.seeded else 0
    streams = cfg.grid.selector_streams
    try:
        sel = selector.select(feats, budget, run_seed, streams=streams)
    except Exception as err:  # noqa: BLE001
        return f"{type(err).__name__}: {err}"
    path = tmp_path / f"{key}-{frac}-{seed}.parquet"
    write_manifest(path, sel, selector=spec.name, params=selector.params(), budget=budget,
                   seed=run_seed, features="fp-test", ids=feats["id"], fraction=frac,
                   streams=streams if own_stream(selector, streams) else None)
    return read_manifest(path)


def _without_provenance(meta):
    return {**meta, "info": {k: v for k, v in meta["info"].items() if k not in PROVENANCE_KEYS}}


def test_sliced_manifests_equal_separate_runs(stage, tmp_path):
    cfg, feats, res, _ = stage
    assert len(res) == len(SELECTORS) * len(FRACTIONS) * len(SEEDS)
    for (key, frac, seed), r in res.items():
        want = _separate(cfg, feats, key, frac, seed, tmp_path)
        if isinstance(want, str):
            assert r.error == want and r.path is None, (key, frac, seed)
            continue
        assert r.error is None, (key, frac, seed, r.error)
        got = read_manifest(r.path)
        np.testing.assert_array_equal(got.ids, want.ids)
        assert (got.scores is None) == (want.scores is None)
        if want.scores is not None:
            assert got.scores.tobytes() == want.scores.tobytes()
        assert _without_provenance(got.meta) == _without_provenance(want.meta), (key, frac, seed)
        assert got.meta["key"] == r.path.stem  # manifest keys unchanged by slicing


def test_prefix_consistent_selectors_run_once_per_seed(stage):
    _, _, res, _ = stage
    top = budget_for(max(FRACTIONS), N)

    def sliced(key):
        return {(f, s): res[(key, f, s)].sliced_from for f in FRACTIONS for s in SEEDS}

    # herding ignores the seed: one run at 40 % serves every cell.
    assert sliced("herding") == {(f, s): None if f == 0.4 else top for f in FRACTIONS for s in SEEDS}
    assert len({res[("herding", f, s)].seconds for f in FRACTIONS for s in SEEDS}) == 1
    assert sliced("kcenter") == sliced("herding")
    assert len({res[("kcenter", 0.4, s)].path for s in SEEDS}) == len(SEEDS)
    # 40 % failed (band too small): the others ran once more at 20 % and were cut from it.
    assert res[("ppl-ranked", 0.4, 0)].error.startswith("InsufficientRowsError")
    assert {res[("ppl-ranked", f, 0)].sliced_from for f in (0.05, 0.1)} == {budget_for(0.2, N)}
    assert res[("ppl-ranked", 0.2, 0)].sliced_from is None
    # Not prefix-consistent: every cell is its own run.
    for key in ("random", "herding-pc"):
        assert set(sliced(key).values()) == {None}
    for r in res.values():
        if r.path is not None:
            assert read_manifest(r.path).meta["info"].get(SLICED_KEY) == r.sliced_from

def test_rerun_reuses_sliced_manifests(stage):
    cfg, feats, res, out = stage
    files = {p: p.stat().st_mtime_ns for p in (out / "m").glob("*.parquet")}
    again = run_select_stage(cfg, feats, features_fingerprint="fp-test", manifest_dir=out / "m")
    assert {p: p.stat().st_mtime_ns for p in (out / "m").glob("*.parquet")} == files
    for cell, r in again.items():
        if res[cell].error is None:
            assert r.reused and r.path == res[cell].path and r.seconds == res[cell].seconds
