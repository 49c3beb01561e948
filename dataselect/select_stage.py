"""Select stage: every (selector, fraction, seed) of the grid, once, as Ray tasks.

Selection runs before training and apart from it, so that (a) a subset is
computed once and shared by any trainer that uses it, (b) its cost is
measured on its own (the report's "selection seconds"), and (c) a rerun
reuses manifests on disk instead of recomputing them.

Given a saved table (:class:`~dataselect.features.store.TableRef`, what the
sweep passes), the driver hands tasks the store path and table key, never
arrays: each task reads the columns its selector needs from the parquet
shards itself. A ``partitions`` selector runs partition by partition
(:mod:`dataselect.partition_stage`), so no task holds the whole pool. An
in-memory table (tests, small callers) is ``ray.put`` once and shared
zero-copy by all tasks, as before.

A selector that raises does not stop the stage: its cell comes back with
``error`` set and no manifest, and the sweep reports the trial as failed.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataselect.config import SelectorSpec, StudyConfig
from dataselect.features.store import (
    TableRef,
    column_shards,
    column_width,
    read_columns,
    table_index,
)
from dataselect.selectors.base import Selection, Selector
from dataselect.selectors.partitioned import DEFAULT_TASK_BYTES, Partitioned, resolve_partitions

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
    """Wall time of ``Selector.select`` alone (features already in memory)."""
    reused: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"selector": self.selector, "fraction": self.fraction, "seed": self.seed,
                "budget": self.budget, "path": str(self.path) if self.path else None,
                "seconds": self.seconds, "reused": self.reused, "error": self.error}


CellKey = tuple[str, float, int]

SECONDS_KEY = "select_seconds"
"""Key of the selection wall time in a manifest's ``info``."""


def budget_for(fraction: float, n_pool: int) -> int:
    """``round(fraction × n_pool)``, at least 1 and at most ``n_pool``."""
    return int(min(n_pool, max(1, round(fraction * n_pool))))


def grid_specs(cfg: StudyConfig) -> list[tuple[SelectorSpec, float]]:
    """(selector spec, fraction) cells of the grid, plus ``full`` at 1.0 when asked."""
    cells = [(s, f) for s in cfg.selectors for f in cfg.grid.fractions]
    if cfg.grid.full_reference and not any(s.key == FULL_KEY for s in cfg.selectors):
        cells.append((SelectorSpec(name="full", label=FULL_KEY), 1.0))
    return cells


def _select_task(features: Mapping[str, np.ndarray] | TableRef, name: str, params: dict[str, Any],
                 budget: int, seed: int) -> dict[str, Any]:
    """Body of one Ray task: errors come back as data so one bad cell cannot stop the stage.

    A :class:`TableRef` is read here, in the task: only the columns the
    selector needs, straight from the shards.
    """
    from dataselect.selectors import get_selector

    try:
        selector = get_selector(name, **dict(params))
        if isinstance(features, TableRef):
            features = read_columns(features, ("id", *selector.required()))
        t0 = time.perf_counter()
        sel = selector.select(features, budget, seed)
        seconds = time.perf_counter() - t0
    except Exception as err:  # noqa: BLE001 - reported per cell, see module docstring
        log.warning("selector %s (budget %d, seed %d) failed: %s", name, budget, seed, err)
        return {"error": f"{type(err).__name__}: {err}"}
    # The manifest keeps the cost with the subset, so a reused manifest still reports it.
    return {"selection": Selection(sel.indices, sel.scores, {**sel.info, SECONDS_KEY: seconds}),
            "seconds": seconds}


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
) -> dict[CellKey, SelectionResult]:
    """Run or reuse every selection of the grid; write manifests.

    Parameters
    ----------
    cfg : StudyConfig
        Selectors, fractions, seeds (and ``full_reference``).
    features : TableRef or mapping of str to ndarray
        The pool's saved feature table (tasks read their columns from its
        shards; ``partitions`` selectors run partition by partition), or the
        table in memory (``ray.put`` once; must hold ``id``).
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

    from dataselect.manifest import read_manifest, selection_key, write_manifest
    from dataselect.selectors import get_selector

    out_dir = Path(manifest_dir) if manifest_dir is not None else cfg.study_dir / "manifests"
    out_dir.mkdir(parents=True, exist_ok=True)
    stored = isinstance(features, TableRef)
    index = table_index(features) if stored else None
    ids = np.asarray(index["id"] if stored else features["id"], dtype=np.int64)
    n_pool = len(ids)
    results: dict[CellKey, SelectionResult] = {}
    auto: tuple[int, float] | None = None  # (embedding width, task bytes), looked up once
    # One job per manifest; a seed-independent selector (Selector.seeded is
    # False) gets one job at seed 0 whose manifest serves every seed's cell.
    todo: dict[Path, tuple[list[CellKey], SelectorSpec, int, int, dict[str, Any]]] = {}
    chosen: dict[Path, Selector] = {}
    for spec, frac in grid_specs(cfg):
        selector = get_selector(spec.name, **dict(spec.params))
        if isinstance(selector, Partitioned) and selector.partitions == "auto":
            auto = auto or (_embedding_dim(features), task_memory_bytes(cfg))
            selector = resolve_partitions(selector, n_pool, auto[0], auto[1])
        resolved = selector.params()
        budget = budget_for(frac, n_pool)
        for seed in cfg.grid.seeds:
            cell = (spec.key, frac, seed)
            run_seed = seed if selector.seeded else 0
            key = selection_key(spec.name, resolved, budget, run_seed, features_fingerprint)
            path = out_dir / f"{key}.parquet"
            if path.is_file():
                info = read_manifest(path).meta.get("info") or {}
                results[cell] = SelectionResult(spec.key, frac, seed, budget, path,
                                                float(info.get(SECONDS_KEY, float("nan"))), reused=True)
            elif path in todo:
                todo[path][0].append(cell)
            else:
                todo[path] = ([cell], spec, budget, run_seed, resolved)
                chosen[path] = selector
    log.info("select stage: %d cells reused, %d selections to run", len(results), len(todo))
    if not todo:
        return results

    # Partitioned selections of a saved table run through the partition
    # stage (below); every other selection is one task.
    split = {p for p, s in chosen.items() if stored and isinstance(s, Partitioned)}
    source = features if stored else ray.put({k: np.asarray(v) for k, v in features.items()})
    remote = ray.remote(num_cpus=1)(_select_task)
    refs = {path: remote.remote(source, spec.name, _task_params(spec, chosen[path]), budget, run_seed)
            for path, (_, spec, budget, run_seed, _) in todo.items() if path not in split}
    done = _run_partitioned_cells(features, index, {p: (chosen[p], todo[p][2], todo[p][3]) for p in split},
                                  out_dir) if split else {}
    for path, (cells, spec, budget, run_seed, resolved) in todo.items():
        got = done[path] if path in split else ray.get(refs[path])
        if "error" not in got:
            write_manifest(path, got["selection"], selector=spec.name, params=resolved, budget=budget,
                           seed=run_seed, features=features_fingerprint, ids=ids, fraction=cells[0][1])
        for cell in cells:
            if "error" in got:
                results[cell] = SelectionResult(spec.key, cell[1], cell[2], budget, None, float("nan"),
                                                error=got["error"])
            else:
                results[cell] = SelectionResult(spec.key, cell[1], cell[2], budget, path, got["seconds"])
    failed = [c for c, r in results.items() if r.error]
    if failed:
        log.warning("select stage: %d cell(s) failed: %s", len(failed), failed)
    return results


def _task_params(spec: SelectorSpec, selector: Selector) -> dict[str, Any]:
    """The config's params, with ``partitions: auto`` replaced by what it resolved to."""
    params = dict(spec.params)
    if params.get("partitions") == "auto":
        params["partitions"] = selector.partitions if isinstance(selector, Partitioned) else 1
    return params


def _run_partitioned_cells(
    ref: TableRef, index: dict[str, np.ndarray], cells: dict[Path, tuple[Partitioned, int, int]],
    out_dir: Path,
) -> dict[Path, dict[str, Any]]:
    """Partitioned selections, one partitioning per (P, seed) shared by its cells.

    Each partitioning is written under ``<manifests>/.partitions/`` and
    removed once its cells are done. Errors come back per cell, as data.
    """
    from dataselect.partition_stage import plan_key, prepare_partitions, run_partitioned

    groups: dict[str, list[Path]] = {}
    for path, (selector, _, seed) in cells.items():
        groups.setdefault(plan_key(ref, selector, seed), []).append(path)
    out: dict[Path, dict[str, Any]] = {}
    for key, paths in groups.items():
        work = out_dir / ".partitions" / key
        first, _, seed = cells[paths[0]]
        try:
            t0 = time.perf_counter()
            prepared = prepare_partitions(ref, first, seed, work, index=index)
            prep_s = time.perf_counter() - t0
        except Exception as err:  # noqa: BLE001 - reported per cell, see module docstring
            log.warning("partitioning %s (P=%s, seed %d) failed: %s", ref.key[:12], first.partitions, seed, err)
            shutil.rmtree(work, ignore_errors=True)
            out.update({p: {"error": f"{type(err).__name__}: {err}"} for p in paths})
            continue
        for path in paths:
            selector, budget, _ = cells[path]
            try:
                t0 = time.perf_counter()
                sel = run_partitioned(prepared, selector, budget)
                # Selection seconds include the shared partitioning, as if run alone.
                seconds = time.perf_counter() - t0 + prep_s
            except Exception as err:  # noqa: BLE001 - reported per cell
                log.warning("selector %s (budget %d, partitioned) failed: %s", selector.name, budget, err)
                out[path] = {"error": f"{type(err).__name__}: {err}"}
                continue
            out[path] = {"selection": Selection(sel.indices, sel.scores, {**sel.info, SECONDS_KEY: seconds}),
                         "seconds": seconds}
        shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(OSError):
        (out_dir / ".partitions").rmdir()
    return out
