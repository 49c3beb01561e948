"""Select stage on a saved table (issue 17): tasks read shards themselves, and
``partitions: 2`` through Ray Data + one task per partition writes the manifest
the in-memory :class:`Partitioned` selector gives."""

from __future__ import annotations

import numpy as np
import pytest

from dataselect.core.manifest import read_manifest
from dataselect.features.table_ref import read_columns, save_embedding_table
from dataselect.selectors import get_selector
from dataselect.sweep.select_stage import budget_for, run_select_stage
from dataselect.sweep.study import parse_study


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """1,500 clustered rows, 8-d, ids shuffled (frame order != id order), 5 shards."""
    rng = np.random.default_rng(0)
    centres = 4 * rng.normal(size=(12, 8))
    blob = rng.integers(0, 12, 1500)
    x = (centres[blob] + rng.normal(size=(1500, 8))).astype(np.float32)
    ids = rng.permutation(10_000)[:1500].astype(np.int64)
    y = (blob % 3 == 0).astype(np.int64)
    ref = save_embedding_table(tmp_path_factory.mktemp("store"), ids, y, x, shard_size=300)
    return ref, {"id": ids, "label": y, "embedding": x}


def test_read_columns_streams_shards_into_frame_order(table):
    ref, mem = table
    got = read_columns(ref, ["id", "label", "embedding"])
    assert all(np.array_equal(got[k], mem[k]) for k in mem)
    rows = np.array([0, 299, 300, 1499])
    part = read_columns(ref, ["embedding"], rows=rows)
    assert list(part) == ["embedding"] and np.array_equal(part["embedding"], mem["embedding"][rows])


def _cfg(sst2_dir, tmp_path, ray_tmp, selectors, seeds=(0, 1)):
    return parse_study({
        "name": "part", "output_dir": str(tmp_path), "dataset": {"source": str(sst2_dir)},
        "selectors": selectors, "grid": {"fractions": [0.1], "seeds": list(seeds), "full_reference": False},
        "trainer": {"mode": "probe"}, "ray": {"num_cpus": 2, "temp_dir": str(ray_tmp)},
    })


def test_partitioned_stage_equals_the_pure_selector(table, sst2_dir, tmp_path, ray_tmp, ray_local):
    ref, mem = table
    specs = [{"name": "kcenter", "params": {"partitions": 2}},
             {"name": "herding", "params": {"partitions": 2, "per_class": "proportional"}},
             {"name": "random", "params": {"partitions": 2}}]
    cfg = _cfg(sst2_dir, tmp_path, ray_tmp, specs, seeds=(1,))  # one partitioning, shared by all three
    out = run_select_stage(cfg, ref, features_fingerprint=ref.key, manifest_dir=tmp_path / "m")
    budget = budget_for(0.1, 1500)
    for spec in specs:
        for seed in (1,):
            r = out[(spec["name"], 0.1, seed)]
            assert r.error is None, r.error
            m = read_manifest(r.path)
            want = get_selector(spec["name"], **spec["params"]).select(
                mem, budget, seed if spec["name"] != "herding" else 0, streams=cfg.grid.selector_streams)
            assert np.array_equal(m.ids, mem["id"][want.indices]), (spec, seed)
            assert m.meta["params"]["partitions"] == 2 and len(m.ids) == budget
            tasks = m.meta["info"]["tasks"]
            assert len(tasks) == 2 and sum(t["picks"] for t in tasks) == budget
    assert not (tmp_path / "m" / ".partitions").exists()  # the partition copies are gone


def test_stage_on_a_saved_table_equals_the_in_memory_stage(table, sst2_dir, tmp_path, ray_tmp, ray_local):
    ref, mem = table
    cfg = _cfg(sst2_dir, tmp_path, ray_tmp, [{"name": "kcenter"}, {"name": "random", "params": {"per_class": "balanced"}},
                                           {"name": "kmeans", "params": {"partitions": "auto", "n_clusters": 10}}])
    a = run_select_stage(cfg, ref, features_fingerprint="fp", manifest_dir=tmp_path / "a")
    b = run_select_stage(cfg, mem, features_fingerprint="fp", manifest_dir=tmp_path / "b")
    assert a.keys() == b.keys()
    for cell in a:
        assert a[cell].path.name == b[cell].path.name  # same key: auto resolved to 1 (the pool fits)
        assert np.array_equal(read_manifest(a[cell].path).ids, read_manifest(b[cell].path).ids)
    assert "partitions" not in read_manifest(a[("kmeans", 0.1, 0)].path).meta["params"]


def test_prefix_reuse_applies_to_the_selector_that_runs(table, sst2_dir, tmp_path, ray_tmp, ray_local):
    """``partitions: auto`` on a pool that fits runs plain herding: its smaller
    budget is cut from the larger; partitioned herding is not prefix-consistent
    (the per-partition split changes with the budget), so each budget runs."""
    ref, mem = table
    cfg = _cfg(sst2_dir, tmp_path, ray_tmp,
               [{"name": "herding", "label": "auto", "params": {"partitions": "auto"}},
                {"name": "herding", "label": "p2", "params": {"partitions": 2}}], seeds=(0,))
    cfg = cfg.model_copy(update={"grid": cfg.grid.model_copy(update={"fractions": [0.05, 0.1]})})
    out = run_select_stage(cfg, ref, features_fingerprint=ref.key, manifest_dir=tmp_path / "m")
    small, large = budget_for(0.05, 1500), budget_for(0.1, 1500)
    assert out[("auto", 0.05, 0)].sliced_from == large and out[("auto", 0.1, 0)].sliced_from is None
    assert out[("p2", 0.05, 0)].sliced_from is None and out[("p2", 0.1, 0)].sliced_from is None
    for label, params in (("auto", {}), ("p2", {"partitions": 2})):
        for frac, budget in ((0.05, small), (0.1, large)):
            want = get_selector("herding", **params).select(mem, budget, 0, streams=cfg.grid.selector_streams)
            assert np.array_equal(read_manifest(out[(label, frac, 0)].path).ids, mem["id"][want.indices])
