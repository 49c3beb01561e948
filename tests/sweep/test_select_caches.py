"""Select-stage caches: code versions in the key, corrupt manifests recomputed, a dead worker survived."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from ray import cloudpickle  # Ray's own copy: the one its task serialisation consults

import dataselect.sweep.select_stage as select_stage
from dataselect.core.manifest import ManifestUnreadableError, read_manifest
from dataselect.selectors.kcenter import KCenterGreedy
from dataselect.sweep.select_stage import run_select_stage

from .conftest import make_cfg, study_raw

N = 120


def _features() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(N, 6)).astype(np.float32)
    return {"id": np.arange(500, 500 + N, dtype=np.int64), "embedding": x,
            "label": (x[:, 0] > 0).astype(np.int64)}


def _cfg(sst2_dir, tmp_path, ray_tmp, selectors=None):
    return make_cfg(study_raw(sst2_dir, tmp_path, "caches", ray_tmp=ray_tmp,
                              selectors=selectors or [{"name": "random"}, {"name": "kcenter"}],
                              grid={"fractions": [0.1], "seeds": [0], "full_reference": False}))


def _run(cfg, out):
    return run_select_stage(cfg, _features(), features_fingerprint="fp", manifest_dir=out)


def test_a_bumped_selector_version_computes_a_new_manifest(sst2_dir, tmp_path, ray_tmp, ray_local,
                                                           monkeypatch):
    """HF datasets' rule: the code's version is in the cache key. Version 1 keeps today's
    keys; a bump (the selector's behaviour changed) is a cache miss, other selectors reuse."""
    cfg = _cfg(sst2_dir, tmp_path, ray_tmp)
    out = tmp_path / "m"
    first = _run(cfg, out)
    kc, rnd = first[("kcenter", 0.1, 0)], first[("random", 0.1, 0)]
    assert "code" not in read_manifest(kc.path).meta
    again = _run(cfg, out)
    assert again[("kcenter", 0.1, 0)].reused and again[("kcenter", 0.1, 0)].path == kc.path

    monkeypatch.setattr(KCenterGreedy, "version", 2)
    bumped = _run(cfg, out)
    new = bumped[("kcenter", 0.1, 0)]
    assert not new.reused and new.path != kc.path and new.path.is_file()
    assert read_manifest(new.path).meta["code"] == {"KCenterGreedy": 2}
    assert bumped[("random", 0.1, 0)].reused and bumped[("random", 0.1, 0)].path == rnd.path
    assert kc.path.is_file()  # the old code's manifest is left alone, never overwritten


def test_a_wrapped_selector_carries_its_inner_version(monkeypatch):
    from dataselect.selectors import get_selector

    assert get_selector("kcenter", per_class="balanced").code_versions() == {}
    monkeypatch.setattr(KCenterGreedy, "version", 3)
    assert get_selector("kcenter", per_class="balanced").code_versions() == {"KCenterGreedy": 3}
    fused = get_selector("fusion", members=[{"name": "kcenter"}, {"name": "random"}])
    assert fused.code_versions() == {"KCenterGreedy": 3}


def test_a_corrupt_manifest_is_recomputed_with_a_warning(sst2_dir, tmp_path, ray_tmp, ray_local, caplog):
    cfg = _cfg(sst2_dir, tmp_path, ray_tmp)
    out = tmp_path / "m"
    path = _run(cfg, out)[("kcenter", 0.1, 0)].path
    good, before = path.read_bytes(), read_manifest(path)
    path.write_bytes(good[: len(good) // 2])  # truncated, e.g. by a full disk on another writer
    with caplog.at_level(logging.WARNING, logger="dataselect.sweep.select_stage"):
        res = _run(cfg, out)
    r = res[("kcenter", 0.1, 0)]
    assert r.error is None and not r.reused and r.path == path
    after = read_manifest(path)  # recomputed: the same selection (only its timing differs)
    np.testing.assert_array_equal(after.ids, before.ids)
    assert {**after.meta, "info": {}} == {**before.meta, "info": {}}
    aside = list(out.glob(f"{path.name}.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == good[: len(good) // 2]
    warned = [m for m in caplog.messages if "corrupt or truncated" in m]
    assert len(warned) == 1 and aside[0].name in warned[0]


def test_an_unreadable_manifest_stops_the_stage_naming_it(sst2_dir, tmp_path, ray_tmp, ray_local,
                                                          monkeypatch):
    cfg = _cfg(sst2_dir, tmp_path, ray_tmp)
    out = tmp_path / "m"
    path = _run(cfg, out)[("kcenter", 0.1, 0)].path

    def denied(p):
        raise ManifestUnreadableError(f"manifest {p} cannot be read (PermissionError: denied)")

    monkeypatch.setattr("dataselect.core.manifest.read_manifest", denied)
    with pytest.raises(ManifestUnreadableError, match="cannot be read"):
        _run(cfg, out)
    assert path.is_file() and not list(out.glob("*.damaged-*"))  # nothing moved or deleted


_REAL_TASK = select_stage._select_task


def _dying_task(features, name, *args, **kwargs):
    """kcenter's worker dies (as under the OOM killer); every other selection runs."""
    if name == "kcenter":
        os._exit(1)
    return _REAL_TASK(features, name, *args, **kwargs)


@pytest.mark.slow
def test_a_dead_worker_fails_its_cell_only(sst2_dir, tmp_path, ray_tmp, ray_local, monkeypatch):
    """ray.get per job used to raise out of the stage and lose every selection not yet
    written; now each is written as it arrives and the dead one is one failed cell."""
    import sys

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(select_stage, "_select_task", _dying_task)
    cfg = _cfg(sst2_dir, tmp_path, ray_tmp, selectors=[{"name": "random"}, {"name": "kcenter"},
                                                       {"name": "herding"}])
    res = _run(cfg, tmp_path / "m")
    dead = res[("kcenter", 0.1, 0)]
    assert dead.path is None and "Ray worker running this selection died" in dead.error
    for key in ("random", "herding"):
        assert res[(key, 0.1, 0)].error is None and res[(key, 0.1, 0)].path.is_file()
    assert list(res) == [("random", 0.1, 0), ("kcenter", 0.1, 0), ("herding", 0.1, 0)]  # grid order
