"""Select stage: every (selector, fraction, seed) of the grid, once, as Ray tasks.

Selection runs before training and apart from it, so that (a) a subset is
computed once and shared by any trainer that uses it, (b) its cost is
measured on its own (the report's "selection seconds"), and (c) a rerun
reuses manifests on disk instead of recomputing them. The feature table is
``ray.put`` once and shared zero-copy by all tasks.

A selector that raises does not stop the stage: its cell comes back with
``error`` set and no manifest, and the sweep reports the trial as failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
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


def _select_task(features: Mapping[str, np.ndarray], name: str, params: dict[str, Any],
                 budget: int, seed: int) -> dict[str, Any]:
    """Body of one Ray task: errors come back as data so one bad cell cannot stop the stage."""
    from dataselect.selectors import get_selector
    from dataselect.selectors.base import Selection

    try:
        t0 = time.perf_counter()
        sel = get_selector(name, **dict(params)).select(features, budget, seed)
        seconds = time.perf_counter() - t0
    except Exception as err:  # noqa: BLE001 - reported per cell, see module docstring
        log.warning("selector %s (budget %d, seed %d) failed: %s", name, budget, seed, err)
        return {"error": f"{type(err).__name__}: {err}"}
    # The manifest keeps the cost with the subset, so a reused manifest still reports it.
    return {"selection": Selection(sel.indices, sel.scores, {**sel.info, SECONDS_KEY: seconds}),
            "seconds": seconds}


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

    from dataselect.manifest import read_manifest, selection_key, write_manifest
    from dataselect.selectors import get_selector

    out_dir = Path(manifest_dir) if manifest_dir is not None else cfg.study_dir / "manifests"
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(features["id"], dtype=np.int64)
    n_pool = len(ids)
    results: dict[CellKey, SelectionResult] = {}
    # One job per manifest; a seed-independent selector (Selector.seeded is
    # False) gets one job at seed 0 whose manifest serves every seed's cell.
    todo: dict[Path, tuple[list[CellKey], SelectorSpec, int, int, dict[str, Any]]] = {}
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
                results[cell] = SelectionResult(spec.key, frac, seed, budget, path,
                                                float(info.get(SECONDS_KEY, float("nan"))), reused=True)
            elif path in todo:
                todo[path][0].append(cell)
            else:
                todo[path] = ([cell], spec, budget, run_seed, resolved)
    log.info("select stage: %d cells reused, %d selections to run", len(results), len(todo))
    if not todo:
        return results

    feats_ref = ray.put({k: np.asarray(v) for k, v in features.items()})
    remote = ray.remote(num_cpus=1)(_select_task)
    refs = [remote.remote(feats_ref, spec.name, dict(spec.params), budget, run_seed)
            for _, spec, budget, run_seed, _ in todo.values()]
    for (path, (cells, spec, budget, run_seed, resolved)), ref in zip(todo.items(), refs, strict=True):
        got = ray.get(ref)
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
