"""Select stage: every (selector, fraction, seed) of the grid, once, as Ray tasks.

Selection runs before training and apart from it, so that (a) a subset is
computed once and shared by any trainer that uses it, (b) its cost is
measured on its own (the report's "selection seconds"), and (c) a rerun
reuses manifests on disk instead of recomputing them. The feature table is
``ray.put`` once and shared zero-copy by all tasks.

A selector whose picks at a smaller budget are the first picks at a larger
one (``Selector.prefix_consistent``: herding, k-center, ranked filters) runs
once per seed at its largest budget; the smaller budgets' manifests are cut
from that run (``Selector.truncate``) and hold the same rows, scores and
info as separate runs would, under the same keys.

A selector that raises does not stop the stage: its cell comes back with
``error`` set and no manifest, and the sweep reports the trial as failed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dataselect.config import SelectorSpec, StudyConfig

log = logging.getLogger(__name__)

FULL_KEY = "full"
"""Selector key of the whole-pool reference trials (``grid.full_reference``)."""


@dataclass(frozen=True)
class SelectionResult:
    """Outcome of one grid cell of the select stage."""

    selector: str
    """Selector key (label or name) from the config."""
    fraction: float
    seed: int
    budget: int
    path: Path | None
    """Manifest parquet, or None when the selector failed."""
    seconds: float
    """Wall time of ``Selector.select`` alone (features already in memory); for
    a sliced manifest, that of the run it was cut from."""
    reused: bool = False
    error: str | None = None
    sliced_from: int | None = None
    """Budget of the run this manifest was cut from, when it was sliced."""

    def to_dict(self) -> dict[str, Any]:
        return {"selector": self.selector, "fraction": self.fraction, "seed": self.seed,
                "budget": self.budget, "path": str(self.path) if self.path else None,
                "seconds": self.seconds, "reused": self.reused, "error": self.error,
                "sliced_from": self.sliced_from}


CellKey = tuple[str, float, int]

SECONDS_KEY = "select_seconds"
"""Key of the selection wall time in a manifest's ``info``."""

SLICED_KEY = "select_sliced_from"
"""Key, in a sliced manifest's ``info``, of the budget of the run it was cut from."""

PROVENANCE_KEYS = (SECONDS_KEY, SLICED_KEY)
"""``info`` keys that say how a manifest was computed, not what was selected."""


def budget_for(fraction: float, n_pool: int) -> int:
    """``round(fraction × n_pool)``, at least 1 and at most ``n_pool``."""
    return int(min(n_pool, max(1, round(fraction * n_pool))))


def grid_specs(cfg: StudyConfig) -> list[tuple[SelectorSpec, float]]:
    """(selector spec, fraction) cells of the grid, plus ``full`` at 1.0 when asked."""
    cells = [(s, f) for s in cfg.selectors for f in cfg.grid.fractions]
    if cfg.grid.full_reference and not any(s.key == FULL_KEY for s in cfg.selectors):
        cells.append((SelectorSpec(name="full", label=FULL_KEY), 1.0))
    return cells


@dataclass
class _Job:
    """One selector run: its largest budget is computed, the others are cut from it."""

    spec: SelectorSpec
    resolved: dict[str, Any]
    seed: int
    outputs: dict[int, tuple[Path, list[CellKey]]] = field(default_factory=dict)
    """budget → (manifest path, grid cells it serves); one budget unless prefix-consistent."""

    @property
    def budget(self) -> int:
        return max(self.outputs)


def _select_task(features: Mapping[str, np.ndarray], name: str, params: dict[str, Any],
                 budget: int, seed: int) -> dict[str, Any]:
    """Body of one Ray task: errors come back as data so one bad cell cannot stop the stage."""
    from dataselect.selectors import get_selector

    try:
        t0 = time.perf_counter()
        sel = get_selector(name, **dict(params)).select(features, budget, seed)
        seconds = time.perf_counter() - t0
    except Exception as err:  # noqa: BLE001 - reported per cell, see module docstring
        log.warning("selector %s (budget %d, seed %d) failed: %s", name, budget, seed, err)
        return {"error": f"{type(err).__name__}: {err}"}
    return {"selection": sel, "seconds": seconds}


def plan_jobs(
    cfg: StudyConfig, n_pool: int, features_fingerprint: str, out_dir: Path
) -> tuple[list[_Job], dict[CellKey, SelectionResult]]:
    """Selector runs the grid needs, and the cells whose manifests are already on disk.

    One job per manifest, except that a prefix-consistent selector gets one
    job per (params, seed) covering all its missing budgets; a
    seed-independent selector (``Selector.seeded`` False) runs at seed 0 and
    that manifest serves every seed's cell.
    """
    from dataselect.manifest import read_manifest, selection_key
    from dataselect.selectors import get_selector

    reused: dict[CellKey, SelectionResult] = {}
    jobs: dict[tuple[Any, ...], _Job] = {}
    for spec, frac in grid_specs(cfg):
        selector = get_selector(spec.name, **dict(spec.params))
        resolved = selector.params()
        budget = budget_for(frac, n_pool)
        for seed in cfg.grid.seeds:
            cell = (spec.key, frac, seed)
            run_seed = seed if selector.seeded else 0
            key = selection_key(spec.name, resolved, budget, run_seed, features_fingerprint)
            path = out_dir / f"{key}.parquet"
            if path.is_file():
                info = read_manifest(path).meta.get("info") or {}
                reused[cell] = SelectionResult(spec.key, frac, seed, budget, path,
                                               float(info.get(SECONDS_KEY, float("nan"))), reused=True)
                continue
            group = (spec.name, json.dumps(resolved, sort_keys=True), run_seed,
                     None if selector.prefix_consistent else budget)
            job = jobs.setdefault(group, _Job(spec, resolved, run_seed))
            job.outputs.setdefault(budget, (path, []))[1].append(cell)
    return list(jobs.values()), reused


def run_select_stage(
    cfg: StudyConfig,
    features: Mapping[str, np.ndarray],
    *,
    features_fingerprint: str,
    manifest_dir: Path | None = None,
) -> dict[CellKey, SelectionResult]:
    """Run or reuse every selection of the grid; write manifests.

    Parameters
    ----------
    cfg : StudyConfig
        Selectors, fractions, seeds (and ``full_reference``).
    features : mapping of str to ndarray
        Pool feature table aligned to pool rows; must hold ``id``.
    features_fingerprint : str
        Content key of ``features``: part of every manifest key, so a new
        pool or new features never reuse old manifests.
    manifest_dir : Path, optional
        Default ``<study_dir>/manifests``.

    Returns
    -------
    dict
        ``(selector key, fraction, seed) → SelectionResult``.
    """
    import ray

    out_dir = Path(manifest_dir) if manifest_dir is not None else cfg.study_dir / "manifests"
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(features["id"], dtype=np.int64)
    jobs, results = plan_jobs(cfg, len(ids), features_fingerprint, out_dir)
    n_manifests = sum(len(j.outputs) for j in jobs)
    log.info("select stage: %d cells reused, %d selections to write from %d runs "
             "(the rest cut from a larger budget of a prefix-consistent selector)",
             len(results), n_manifests, len(jobs))
    if not jobs:
        return results

    feats_ref = ray.put({k: np.asarray(v) for k, v in features.items()})
    remote = ray.remote(num_cpus=1)(_select_task)
    while jobs:
        refs = [remote.remote(feats_ref, j.spec.name, dict(j.spec.params), j.budget, j.seed)
                for j in jobs]
        retry = []
        for job, ref in zip(jobs, refs, strict=True):
            got = ray.get(ref)
            if "error" in got and len(job.outputs) > 1:
                # The error may be the largest budget's alone (a band with too
                # few rows): the smaller budgets run on their own next round.
                _record(results, job, job.budget, None, got["error"], float("nan"), None)
                del job.outputs[job.budget]
                retry.append(job)
                continue
            _write_job(results, job, got, ids, features_fingerprint)
        jobs = retry
    failed = [c for c, r in results.items() if r.error]
    if failed:
        log.warning("select stage: %d cell(s) failed: %s", len(failed), failed)
    return results


def _write_job(results: dict[CellKey, SelectionResult], job: _Job, got: dict[str, Any],
               ids: np.ndarray, features_fingerprint: str) -> None:
    """Write the job's manifests: its own budget as run, smaller ones cut from it."""
    from dataselect.manifest import write_manifest
    from dataselect.selectors import get_selector
    from dataselect.selectors.base import Selection

    if "error" in got:
        for budget in job.outputs:
            _record(results, job, budget, None, got["error"], float("nan"), None)
        return
    top, seconds = job.budget, got["seconds"]
    selector = get_selector(job.spec.name, **dict(job.spec.params))
    for budget, (path, cells) in sorted(job.outputs.items(), reverse=True):
        sel, sliced_from = got["selection"], None
        if budget != top:
            sliced_from = top
            try:
                sel = selector.truncate(sel, budget)
            except Exception as err:  # noqa: BLE001 - as a run at this budget would report it
                log.warning("selector %s (budget %d, seed %d) failed: %s",
                            job.spec.name, budget, job.seed, err)
                _record(results, job, budget, None, f"{type(err).__name__}: {err}", float("nan"), None)
                continue
        # The manifest keeps the cost with the subset, so a reused manifest still reports it.
        info = {**sel.info, SECONDS_KEY: seconds}
        if sliced_from is not None:
            info[SLICED_KEY] = sliced_from
        write_manifest(path, Selection(sel.indices, sel.scores, info), selector=job.spec.name,
                       params=job.resolved, budget=budget, seed=job.seed,
                       features=features_fingerprint, ids=ids, fraction=cells[0][1])
        _record(results, job, budget, path, None, seconds, sliced_from)


def _record(results: dict[CellKey, SelectionResult], job: _Job, budget: int, path: Path | None,
            error: str | None, seconds: float, sliced_from: int | None) -> None:
    for cell in job.outputs[budget][1]:
        results[cell] = SelectionResult(job.spec.key, cell[1], cell[2], budget, path, seconds,
                                        error=error, sliced_from=sliced_from)
