"""Select stage: every (selector, fraction, seed) of the grid, once, as Ray tasks.

Selection runs before training and apart from it, so that (a) a subset is
computed once and shared by any trainer that uses it, (b) its cost is
measured on its own (the report's "selection seconds"), and (c) a rerun
reuses manifests on disk instead of recomputing them.

Given a saved table (:class:`~dataselect.features.store.TableRef`, what the
sweep passes), the driver hands tasks the store path and table key, never
arrays: each task reads the columns its selector needs from the parquet
shards itself. A ``partitions`` selector runs partition by partition
(:mod:`dataselect.sweep.partition_stage`), so no task holds the whole pool. An
in-memory table (tests, small callers) is ``ray.put`` once and shared
zero-copy by all tasks, as before.

A selector whose picks at a smaller budget are the first picks at a larger
one (``Selector.prefix_consistent``: herding, k-center, ranked filters) runs
once per seed at its largest budget; the smaller budgets' manifests are cut
from that run (``Selector.truncate``) and hold the same rows, scores and
info as separate runs would, under the same keys.

A selector that raises does not stop the stage: its cell comes back with
``error`` set and no manifest, and the sweep reports the trial as failed. So
does a task whose Ray worker died (after Ray's own task retries): every
selection is written as soon as its task returns, so the finished ones are
kept whatever happens to the rest.

Each selector draws from a random stream of its own
(``grid.selector_streams: own``, :func:`~dataselect.selectors.base.stream_seed`;
``random`` keeps ``default_rng(seed)``), and the mode enters the key of the
manifests it changed; ``shared`` (every selector on ``default_rng(seed)``)
keeps the keys manifests had before the setting.

A manifest key holds the selector's code versions (``Selector.code_versions``,
only those other than 1): a bumped version computes the selection anew. A
manifest that is on disk but corrupt (truncated, undecodable, inconsistent)
is moved aside (``<key>.parquet.damaged-<time>``) with a warning and
recomputed; one that cannot be read at all (permissions, I/O) stops the stage
with one line naming it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dataselect.core.config import SelectorSpec, StudyConfig
from dataselect.core.errors import first_line, format_exception, log_traceback
from dataselect.features.table_ref import (
    TableRef,
    column_shards,
    column_width,
    read_columns,
    table_index,
)
from dataselect.selectors.base import (
    TARGET_PREFIX,
    FeatureError,
    Selection,
    Selector,
    own_stream,
    stream_seed,
)
from dataselect.selectors.partitioned import Partitioned, resolve_partitions
from dataselect.selectors.partitioning import DEFAULT_TASK_BYTES

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
    traceback: str | None = None
    """Where a failed selection raised (the trial's ``error.txt`` repeats it)."""

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
    """(selector spec, fraction) cells of the grid, plus ``full`` at 1.0 when asked; an arm with
    ``fractions`` only at those (a confirmatory study's arm where its screen chose it)."""
    cells = [(s, f) for s in cfg.selectors for f in cfg.grid.fractions
             if s.fractions is None or f in s.fractions]
    if cfg.grid.full_reference and not any(s.key == FULL_KEY for s in cfg.selectors):
        cells.append((SelectorSpec(name="full", label=FULL_KEY), 1.0))
    return cells


@dataclass
class _Job:
    """One selector run: its largest budget is computed, the others are cut from it."""

    spec: SelectorSpec
    selector: Selector
    """The selector that runs (``partitions: auto`` resolved)."""
    resolved: dict[str, Any]
    seed: int
    features_key: str
    """Fingerprint the manifests record: the pool's, joined with the target's for a
    selector that reads the target."""
    code: dict[str, int] = field(default_factory=dict)
    """The selector's code versions other than 1 (in the manifest key)."""
    streams: str | None = None
    """``grid.selector_streams`` when it changes this selector's picks (in the manifest key)."""
    outputs: dict[int, tuple[Path, list[CellKey]]] = field(default_factory=dict)
    """budget → (manifest path, grid cells it serves); one budget unless prefix-consistent."""

    @property
    def budget(self) -> int:
        return max(self.outputs)


def _select_task(features: Mapping[str, np.ndarray] | TableRef, name: str, params: dict[str, Any],
                 budget: int, seed: int, target: Mapping[str, np.ndarray] | TableRef | None = None,
                 streams: str = "shared") -> dict[str, Any]:
    """Body of one Ray task: errors come back as data so one bad cell cannot stop the stage.

    A :class:`TableRef` is read here, in the task: only the columns the
    selector needs, straight from the shards; the target's columns come in
    as ``target:<column>``.
    """
    from dataselect.selectors import get_selector

    try:
        selector = get_selector(name, **dict(params))
        need = selector.required()
        if isinstance(features, TableRef):
            features = read_columns(features, ("id", *(c for c in need if not c.startswith(TARGET_PREFIX))))
        if want := [c.removeprefix(TARGET_PREFIX) for c in need if c.startswith(TARGET_PREFIX)]:
            if target is None:
                raise FeatureError(f"{name} selects toward a target, and the study has none")
            got = read_columns(target, want) if isinstance(target, TableRef) else {c: target[c] for c in want}
            features = {**features, **{TARGET_PREFIX + c: v for c, v in got.items()}}
        t0 = time.perf_counter()
        sel = selector.select(features, budget, seed, streams=streams)
        seconds = time.perf_counter() - t0
    except Exception as err:  # noqa: BLE001 - reported per cell, see module docstring
        log.warning("selector %s (budget %d, seed %d) failed: %s", name, budget, seed, err)
        return _failure(err)
    return {"selection": sel, "seconds": seconds}


def _failure(err: BaseException) -> dict[str, str]:
    """A failed selection as data: its one-line error and the traceback (which the
    driver writes to the sweep log: a task's own log lines stay in its worker's log)."""
    return {"error": f"{type(err).__name__}: {err}", "traceback": format_exception(err)}


def reads_target(selector: Selector) -> bool:
    """Whether ``selector`` reads target columns (``target:<column>``)."""
    return any(c.startswith(TARGET_PREFIX) for c in selector.required())


def plan_jobs(
    cfg: StudyConfig, n_pool: int, features_fingerprint: str, out_dir: Path,
    resolve: Callable[[Selector], Selector] | None = None, target_fingerprint: str | None = None,
) -> tuple[list[_Job], dict[CellKey, SelectionResult]]:
    """Selector runs the grid needs, and the cells whose manifests are already on disk.

    One job per manifest, except that a prefix-consistent selector gets one
    job per (params, seed) covering all its missing budgets; a
    seed-independent selector (``Selector.seeded`` False) runs at seed 0 and
    that manifest serves every seed's cell. ``resolve`` makes a selector
    concrete before its key is taken (``partitions: auto``).
    """
    from dataselect.core.manifest import selection_key
    from dataselect.selectors import get_selector

    reused: dict[CellKey, SelectionResult] = {}
    jobs: dict[tuple[Any, ...], _Job] = {}
    for spec, frac in grid_specs(cfg):
        selector = get_selector(spec.name, **dict(spec.params))
        if resolve is not None:
            selector = resolve(selector)
        resolved, code = selector.params(), selector.code_versions()
        streams = cfg.grid.selector_streams if own_stream(selector, cfg.grid.selector_streams) else None
        budget = budget_for(frac, n_pool)
        fkey = (f"{features_fingerprint}+target:{target_fingerprint}" if reads_target(selector)
                else features_fingerprint)
        for seed in cfg.grid.seeds:
            cell = (spec.key, frac, seed)
            run_seed = seed if selector.seeded else 0
            key = selection_key(spec.name, resolved, budget, run_seed, fkey, code, streams)
            path = out_dir / f"{key}.parquet"
            if (info := _reusable(path)) is not None:
                reused[cell] = SelectionResult(spec.key, frac, seed, budget, path,
                                               float(info.get(SECONDS_KEY, float("nan"))), reused=True)
                continue
            group = (spec.name, json.dumps(resolved, sort_keys=True), run_seed,
                     None if selector.prefix_consistent else budget)
            job = jobs.setdefault(group, _Job(spec, selector, resolved, run_seed, fkey, code=code,
                                                    streams=streams))
            job.outputs.setdefault(budget, (path, []))[1].append(cell)
    return list(jobs.values()), reused


def _reusable(path: Path) -> dict[str, Any] | None:
    """The ``info`` of the manifest at ``path``, or None when there is none to reuse.

    A corrupt one is moved aside (kept for inspection) with a warning, so its
    selection is computed again; an unreadable one raises
    :class:`~dataselect.core.manifest.ManifestUnreadableError`.
    """
    from dataselect.core.manifest import ManifestError, ManifestUnreadableError, read_manifest

    if not path.is_file():
        return None
    try:
        return read_manifest(path).meta.get("info") or {}
    except ManifestUnreadableError:
        raise
    except ManifestError as err:
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        path.replace(aside)
        log.warning("select stage: %s; kept as %s and computed again", str(err).splitlines()[0][:300],
                    aside.name)
        return None


def task_memory_bytes(cfg: StudyConfig) -> float:
    """Memory one select task may use: ``ray.select_task_memory_gb``, else the
    smallest node's Ray ``memory`` per CPU (tasks take one CPU each)."""
    if cfg.ray.select_task_memory_gb is not None:
        return cfg.ray.select_task_memory_gb * 2**30
    import ray

    per_cpu = [n["Resources"].get("memory", 0) / max(n["Resources"].get("CPU", 1), 1)
               for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
    return min(per_cpu) if per_cpu else float(DEFAULT_TASK_BYTES)


def _embedding_dim(features: Mapping[str, np.ndarray] | TableRef) -> int:
    if isinstance(features, TableRef):
        return column_width(column_shards(features, "embedding"), "embedding")
    return int(np.asarray(features["embedding"]).shape[1])


def run_select_stage(
    cfg: StudyConfig,
    features: Mapping[str, np.ndarray] | TableRef,
    *,
    features_fingerprint: str,
    manifest_dir: Path | None = None,
    target: Mapping[str, np.ndarray] | TableRef | None = None,
    transductive: bool = False,
) -> dict[CellKey, SelectionResult]:
    """Run or reuse every selection of the grid; write manifests.

    Parameters
    ----------
    cfg : StudyConfig
        Selectors, fractions, seeds (and ``full_reference``).
    features : mapping of str to ndarray, or TableRef
        Pool feature table aligned to pool rows (must hold ``id``), or the
        saved table's reference, whose shards the tasks read themselves.
    features_fingerprint : str
        Content key of ``features``: part of every manifest key, so a new
        pool or new features never reuse old manifests.
    manifest_dir : Path, optional
        Default ``<study_dir>/manifests``.
    target : mapping or TableRef, optional
        The target's feature table (or its reference), for selectors that
        read ``target:<column>``; its key joins the pool's in their manifests' keys.
    transductive : bool
        The target shares texts with the eval set (``TargetSet.transductive``):
        the selections that read it are said to be transductive.

    Returns
    -------
    dict
        ``(selector key, fraction, seed) → SelectionResult``.
    """
    import ray

    out_dir = Path(manifest_dir) if manifest_dir is not None else cfg.study_dir / "manifests"
    out_dir.mkdir(parents=True, exist_ok=True)
    stored = isinstance(features, TableRef)
    index = table_index(features) if stored else None
    ids = np.asarray(index["id"] if stored else features["id"], dtype=np.int64)
    n_pool = len(ids)
    auto: list[tuple[int, float]] = []  # (embedding width, task bytes), looked up once

    def resolve(selector: Selector) -> Selector:
        if not (isinstance(selector, Partitioned) and selector.partitions == "auto"):
            return selector
        auto[:] = auto or [(_embedding_dim(features), task_memory_bytes(cfg))]
        return resolve_partitions(selector, n_pool, *auto[0])

    target_fp = None if target is None else _fingerprint(target)
    jobs, results = plan_jobs(cfg, n_pool, features_fingerprint, out_dir, resolve, target_fp)
    if transductive and (names := sorted({j.spec.key for j in jobs if reads_target(j.selector)})):
        log.warning("select stage: %s read eval texts (the target shares texts with the eval set): "
                    "their selections are transductive", ", ".join(names))
    n_manifests = sum(len(j.outputs) for j in jobs)
    log.info("select stage: %d cells reused, %d selections to write from %d runs "
             "(the rest cut from a larger budget of a prefix-consistent selector)",
             len(results), n_manifests, len(jobs))
    if not jobs:
        return results

    source = features if stored else ray.put({k: np.asarray(v) for k, v in features.items()})
    tsource = (target if target is None or isinstance(target, TableRef)
               else ray.put({k: np.asarray(v) for k, v in target.items()}))
    remote = ray.remote(num_cpus=1)(_select_task)
    order = {cell: i for i, cell in enumerate(_grid_cells(cfg))}
    warned: set[tuple[str, str]] = set()
    while jobs:
        # Partitioned selections of a saved table run through the partition
        # stage (in the driver, while the other tasks run); the rest are one task each.
        split = [j for j in jobs if stored and isinstance(j.selector, Partitioned)]
        refs = {remote.remote(source, j.spec.name, _task_params(j), j.budget, j.seed,
                              tsource if reads_target(j.selector) else None, cfg.grid.selector_streams): j
                for j in jobs if j not in split}
        done = (_run_partitioned_jobs(features, index, split, out_dir, cfg.grid.selector_streams)
                if split else {})
        retry: list[_Job] = []
        for job in split:
            _take(results, job, done[id(job)], ids, retry, warned)
        pending = list(refs)
        while pending:
            # Each selection is written as its task returns: a worker that dies
            # later loses nothing that finished before it.
            ready, pending = ray.wait(pending, num_returns=1)
            job = refs[ready[0]]
            try:
                got = ray.get(ready[0])
            except Exception as err:  # noqa: BLE001 - _select_task returns its own errors: a dead worker
                got = _failure(err)
                got["error"] = (f"the Ray worker running this selection died (after Ray's retries): "
                                f"{first_line(err)[:300]}")
            _take(results, job, got, ids, retry, warned)
        jobs = retry
    failed = [c for c, r in results.items() if r.error]
    if failed:
        log.warning("select stage: %d cell(s) failed: %s", len(failed), failed)
    # Grid order, whatever order the tasks finished in.
    return dict(sorted(results.items(), key=lambda kv: order.get(kv[0], len(order))))


def _grid_cells(cfg: StudyConfig) -> list[CellKey]:
    return [(spec.key, frac, seed) for spec, frac in grid_specs(cfg) for seed in cfg.grid.seeds]


def _take(results: dict[CellKey, SelectionResult], job: _Job, got: dict[str, Any], ids: np.ndarray,
          retry: list[_Job], warned: set[tuple[str, str]] | None = None) -> None:
    """Write (or record the failure of) one finished job."""
    if "error" in got and len(job.outputs) > 1:
        # The error may be the largest budget's alone (a band with too
        # few rows): the smaller budgets run on their own next round.
        _record(results, job, job.budget, None, got, float("nan"), None)
        del job.outputs[job.budget]
        retry.append(job)
        return
    _write_job(results, job, got, ids, warned)


def _fingerprint(table: Mapping[str, Any] | TableRef) -> str:
    """A saved table's key, a FeatureTable's fingerprint, else a digest of the arrays."""
    if isinstance(table, TableRef):
        return table.key
    if fp := getattr(table, "fingerprint", None):
        return str(fp)
    import hashlib

    h = hashlib.sha256()
    for k in sorted(table):
        v = np.asarray(table[k])
        rows = v if v.dtype == object else [v]
        h.update(k.encode())
        for r in rows:
            h.update(np.ascontiguousarray(r).tobytes())
    return h.hexdigest()


def _task_params(job: _Job) -> dict[str, Any]:
    """The config's params, with ``partitions: auto`` replaced by what it resolved to."""
    params = dict(job.spec.params)
    if params.get("partitions") == "auto":
        params["partitions"] = job.selector.partitions if isinstance(job.selector, Partitioned) else 1
    return params


def _run_partitioned_jobs(
    ref: TableRef, index: dict[str, np.ndarray], jobs: list[_Job], out_dir: Path, streams: str = "shared",
) -> dict[int, dict[str, Any]]:
    """Partitioned selections (``id(job)`` → result), one partitioning per (P, seed) shared by its jobs.

    Each partitioning is written under ``<manifests>/.partitions/`` and
    removed once its jobs are done. Errors come back per job, as data.
    """
    from dataselect.sweep.partition_stage import plan_key, prepare_partitions, run_partitioned

    groups: dict[str, list[_Job]] = {}
    for job in jobs:
        # The partitioning draws from the selector's stream, as Partitioned.select does in memory.
        entropy = stream_seed(job.selector.name, job.seed, streams)
        groups.setdefault(plan_key(ref, job.selector, entropy), []).append(job)
    out: dict[int, dict[str, Any]] = {}
    for key, group in groups.items():
        work = out_dir / ".partitions" / key
        first = group[0]
        try:
            t0 = time.perf_counter()
            prepared = prepare_partitions(ref, first.selector, stream_seed(first.selector.name, first.seed, streams),
                                          work, index=index)
            prep_s = time.perf_counter() - t0
        except Exception as err:  # noqa: BLE001 - reported per cell, see module docstring
            log.warning("partitioning %s (P=%s, seed %d) failed: %s", ref.key[:12],
                        first.selector.partitions, first.seed, err)
            shutil.rmtree(work, ignore_errors=True)
            out.update({id(j): _failure(err) for j in group})
            continue
        for job in group:
            try:
                t0 = time.perf_counter()
                sel = run_partitioned(prepared, job.selector, job.budget)
                # Selection seconds include the shared partitioning, as if run alone.
                out[id(job)] = {"selection": sel, "seconds": time.perf_counter() - t0 + prep_s}
            except Exception as err:  # noqa: BLE001 - reported per cell
                log.warning("selector %s (budget %d, partitioned) failed: %s", job.spec.name, job.budget, err)
                out[id(job)] = _failure(err)
        shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(OSError):
        (out_dir / ".partitions").rmdir()
    return out


def _write_job(results: dict[CellKey, SelectionResult], job: _Job, got: dict[str, Any],
               ids: np.ndarray, warned: set[tuple[str, str]] | None = None) -> None:
    """Write the job's manifests: its own budget as run, smaller ones cut from it.

    A selection whose ``info`` warns (a target-aware selection driven by length or one
    class, a domain classifier at chance: :mod:`dataselect.selectors.target_support`)
    gets one console warning per selector and kind of warning (``warned`` remembers).
    """
    from dataselect.core.manifest import write_manifest
    from dataselect.selectors.target_support import collect_warnings

    if "error" in got:
        for budget in job.outputs:
            _record(results, job, budget, None, got, float("nan"), None)
        return
    top, seconds = job.budget, got["seconds"]
    for budget, (path, cells) in sorted(job.outputs.items(), reverse=True):
        sel, sliced_from = got["selection"], None
        if budget != top:
            sliced_from = top
            try:
                sel = job.selector.truncate(sel, budget)
            except Exception as err:  # noqa: BLE001 - as a run at this budget would report it
                _record(results, job, budget, None, _failure(err), float("nan"), None)
                continue
        # The manifest keeps the cost with the subset, so a reused manifest still reports it.
        info = {**sel.info, SECONDS_KEY: seconds}
        if sliced_from is not None:
            info[SLICED_KEY] = sliced_from
        write_manifest(path, Selection(sel.indices, sel.scores, info), selector=job.spec.name,
                       params=job.resolved, budget=budget, seed=job.seed,
                       features=job.features_key, ids=ids, fraction=cells[0][1], code=job.code,
                       streams=job.streams)
        _record(results, job, budget, path, None, seconds, sliced_from)
        for text in collect_warnings(sel.info):
            kind = (job.spec.key, text.split(":", 1)[0])
            if warned is None or kind not in warned:
                log.warning("selector %s (budget %d, seed %d): %s (the report lists every such selection)",
                            job.spec.key, budget, job.seed, text)
                if warned is not None:
                    warned.add(kind)


def _record(results: dict[CellKey, SelectionResult], job: _Job, budget: int, path: Path | None,
            failure: dict[str, str] | None, seconds: float, sliced_from: int | None) -> None:
    error = tb = None
    if failure is not None:
        error, tb = failure["error"], failure.get("traceback")
        log.warning("selector %s (budget %d, seed %d) failed: %s (traceback in the sweep log)",
                    job.spec.key, budget, job.seed, error.splitlines()[0] if error else "")
        log_traceback(f"selector {job.spec.key} (budget {budget}, seed {job.seed}) failed", tb or "")
    for cell in job.outputs[budget][1]:
        results[cell] = SelectionResult(job.spec.key, cell[1], cell[2], budget, path, seconds,
                                        error=error, sliced_from=sliced_from, traceback=tb)
