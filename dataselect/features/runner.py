"""Compute feature families through Ray Data (or in-process) into the store.

For each requested family: build its spec for the config, derive the cache
key, read whatever shards already exist and are valid, and compute only the
missing ones. A complete hit touches neither torch, Ray nor any model.
Missing rows stream through ``Dataset.map_batches`` with an actor pool
(model loaded once per actor) in shard order, length-sorted within each
shard; each shard is written as soon as all its rows are back, so an
interrupted run resumes from the last written shard.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from dataselect.core.config import FeaturesConfig
from dataselect.core.errors import DataError, ModelError, UserError
from dataselect.features import judge
from dataselect.features._common import FamilySpec, code_version, cuda_guess
from dataselect.features.families import FAMILIES, default_families
from dataselect.features.store import (
    FeatureStore,
    FeatureTable,
    align,
    concat,
    family_key,
    shard_bounds,
)

log = logging.getLogger(__name__)

Engine = Literal["auto", "ray", "local"]


def _resolve_which(which: Iterable[str] | None, cfg: FeaturesConfig) -> list[str]:
    if which is None:
        names = default_families(cfg)
    else:
        names = set(which)
        if unknown := names - set(FAMILIES):
            raise UserError(f"compute_features.which: unknown families {sorted(unknown)}; known: {list(FAMILIES)}")
        if "perplexity" in names and cfg.perplexity_model is None:
            raise UserError("compute_features.which: 'perplexity' needs features.perplexity_model; got None")
        if "pseudo_perplexity" in names and cfg.mlm_model is None:
            raise UserError("compute_features.which: 'pseudo_perplexity' needs features.mlm_model; got None")
        if "llm_judge" in names and judge.judge_model(cfg) is None:
            raise UserError("compute_features.which: 'llm_judge' needs features.judge_model or "
                            "features.perplexity_model; both are None")
        if "consistency" in names and cfg.consistency_variants == 0:
            raise UserError("compute_features.which: 'consistency' needs features.consistency_variants > 0; got 0")
    return [n for n in FAMILIES if n in names]


def _check_frame(frame: pd.DataFrame) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"compute_features.frame must be a pandas DataFrame; got {type(frame).__name__}")
    if missing := {"id", "text", "label"} - set(frame.columns):
        raise DataError(f"compute_features.frame lacks columns {sorted(missing)}; has {list(frame.columns)}")
    if not pd.api.types.is_integer_dtype(frame["id"]):
        raise DataError(f"compute_features.frame['id'] must be integers; got dtype {frame['id'].dtype}")
    if frame["id"].duplicated().any():
        dup = frame["id"][frame["id"].duplicated()].iloc[0]
        raise DataError(f"compute_features.frame['id'] must be unique; id {dup} repeats")
    bad = ~frame["text"].map(lambda t: isinstance(t, str))
    if bad.any():
        raise DataError(f"compute_features.frame['text'] must be str; row id {frame['id'][bad].iloc[0]} is not")


def _device_candidates(device: str) -> list[str]:
    if device != "auto":
        return [device]
    return ["cuda", "cpu"] if cuda_guess() else ["cpu", "cuda"]


def compute_features(
    frame: pd.DataFrame,
    cfg: FeaturesConfig,
    store_dir: str | Path,
    *,
    which: set[str] | None = None,
    progress: bool = True,
    engine: Engine = "auto",
    columns: Collection[str] | None = None,
) -> FeatureTable:
    """Compute (or load from cache) features for every row of ``frame``.

    Parameters
    ----------
    frame : DataFrame
        Columns ``id`` (unique int), ``text`` (str), ``label`` (int), any row order.
    cfg : FeaturesConfig
        Models and settings; see :class:`dataselect.core.config.FeaturesConfig`.
    store_dir : path
        Feature store root, conventionally ``<study_dir>/features``.
    which : set of str, optional
        Families to compute, from ``embedding``, ``perplexity``,
        ``pseudo_perplexity``, ``text_metrics``, ``subword_ratio``, ``llm_judge``,
        ``consistency``; None: all
        that ``cfg`` enables (:func:`default_families`).
    progress : bool, default=True
        Show Ray Data's progress bars and a tqdm bar over shards.
    engine : {"auto", "ray", "local"}, default="auto"
        ``ray``: Ray Data ``map_batches`` with an actor pool of
        ``cfg.num_actors`` (model families) or tasks (text metrics);
        ``local``: the same UDF classes called in this process (no Ray);
        ``auto``: per family, see :func:`pick_engine`.
    columns : collection of str, optional
        Feature columns the returned table holds (``id`` and ``label``
        always); None: all. The others are still computed, checked and
        cached, shard by shard, and never held whole in this process: a
        caller that hands selection tasks the store's path (the sweep) keeps
        a 10 M-row pool's embeddings out of its memory.

    Returns
    -------
    FeatureTable
        Read-only mapping aligned to ``frame``'s row order: ``id``, ``label``
        and the families' columns (``embedding`` (n, d) float32,
        ``embedding_norm``, ``perplexity``, ``lm_mean_nll``,
        ``lm_token_count``, ``pseudo_perplexity``, ``mlm_mean_nll``,
        ``mlm_token_count``, text metrics, ``subword_ratio``, ``judge_*``,
        ``eda_embedding`` (n, v * d) float32).

    Raises
    ------
    DataError
        ``frame`` lacks a column, has repeated ids or non-string texts.
    ModelError
        A model cannot be resolved or loaded, or produced NaN features.
    """
    from dataselect.core.data import frame_fingerprint

    _check_frame(frame)
    if engine not in ("auto", "ray", "local"):
        raise UserError(f"compute_features.engine must be 'auto', 'ray' or 'local'; got {engine!r}")
    names = _resolve_which(which, cfg)
    store = FeatureStore(store_dir)
    canon = frame[["id", "text", "label"]].sort_values("id", kind="stable").reset_index(drop=True)
    canon["id"] = canon["id"].astype(np.int64)
    canon["label"] = canon["label"].astype(np.int64)
    frame_fp = frame_fingerprint(canon, labels=False)  # no family reads labels
    frame_ids = frame["id"].to_numpy(np.int64)
    labels = frame["label"].to_numpy(np.int64)
    cols: dict[str, np.ndarray] = {"id": frame_ids, "label": labels}
    keys: dict[str, str] = {}
    stored = ["id", "label"]
    for name in names:
        key, values, family_cols = _family(name, canon, frame_fp, cfg, store, progress=progress, engine=engine,
                                           keep=None if columns is None else set(columns))
        keys[name] = key
        stored += family_cols
        cols.update(align(values, canon["id"].to_numpy(), frame_ids))
    order = hashlib.sha256(frame_ids.tobytes() + labels.tobytes()).hexdigest()
    table_fp = hashlib.sha256(json.dumps({"families": keys, "rows": order}, sort_keys=True).encode()).hexdigest()
    table = FeatureTable(cols, table_fp)
    store.save_table(table, keys, columns=stored)
    return table


def _model_fp(ref: str | None) -> str | None:
    from dataselect.core.models import model_fingerprint

    return None if ref is None else model_fingerprint(ref)


def _key(spec: FamilySpec, frame_fp: str, shard_size: int) -> str:
    return family_key(frame_fp, code_version(spec.udf), _model_fp(spec.model_ref), spec.key_settings, shard_size)


def _read_all(store: FeatureStore, key: str, spec: FamilySpec, ids: np.ndarray, shard_size: int,
              keep: list[str]) -> tuple[dict[int, dict[str, np.ndarray]], list[int]]:
    """Cached shards (checked whole; only ``id`` and ``keep`` retained) and the missing ones."""
    have, missing = {}, []
    for i, (lo, hi) in enumerate(shard_bounds(len(ids), shard_size)):
        v = store.read_shard(key, i, spec.columns, ids[lo:hi], spec.check_values)
        if v is None:
            missing.append(i)
        else:
            have[i] = {c: v[c] for c in ("id", *keep)}
    return have, missing


def _family(
    name: str, canon: pd.DataFrame, frame_fp: str, cfg: FeaturesConfig, store: FeatureStore,
    *, progress: bool, engine: Engine, keep: set[str] | None = None,
) -> tuple[str, dict[str, np.ndarray], list[str]]:
    """(family key, its ``keep`` columns id-sorted, all its columns); None keeps all."""
    ids = canon["id"].to_numpy()
    size = cfg.shard_size
    # device="auto": a cache made on either device is accepted before torch is imported.
    partial: dict[str, tuple[dict[int, dict[str, np.ndarray]], list[int]]] = {}
    for dev in _device_candidates(cfg.device):
        spec = FAMILIES[name](cfg, dev)
        key = _key(spec, frame_fp, size)
        kept = [c for c in spec.columns if keep is None or c in keep]
        if key not in partial:
            partial[key] = _read_all(store, key, spec, ids, size, kept)
        have, missing = partial[key]
        if not missing:
            log.info("features %s: cache hit (%s)", name, key[:12])
            if store.read_meta(key) is None:
                store.finish(key, _meta(name, spec, key, frame_fp, len(ids), size))
            return key, concat([have[i] for i in sorted(have)], kept), list(spec.columns)
    from dataselect.core.models import pick_device

    device = pick_device(cfg.device) if cfg.device != "auto" or spec.uses_model else "cpu"
    engine = pick_engine(engine, cfg, device, uses_model=spec.uses_model)
    n_threads, _ = _cpu_share(cfg, engine)
    spec = FAMILIES[name](cfg, device, n_threads)
    key = _key(spec, frame_fp, size)
    kept = [c for c in spec.columns if keep is None or c in keep]
    have, missing = partial.get(key) or _read_all(store, key, spec, ids, size, kept)
    log.info("features %s: computing %d of %d shards on %s, %s (%s)", name, len(missing),
             len(shard_bounds(len(ids), size)), device, "Ray Data" if engine == "ray" else "in process", key[:12])
    t0 = time.perf_counter()
    bounds = shard_bounds(len(ids), size)
    for i, values in _compute_shards(spec, canon, bounds, missing, cfg, progress=progress, engine=engine):
        if problem := (spec.check_values(values) if spec.check_values else None):
            raise ModelError(f"features {name}: model {spec.model_ref!r} produced invalid values ({problem})")
        store.write_shard(key, i, values)
        have[i] = {c: values[c] for c in ("id", *kept)}
    seconds = time.perf_counter() - t0
    log.info("features %s: %d rows in %.1f s", name, sum(bounds[i][1] - bounds[i][0] for i in missing), seconds)
    # seconds: the compute of the shards this run wrote (all of them unless a run was resumed)
    store.finish(key, {**_meta(name, spec, key, frame_fp, len(ids), size), "seconds": round(seconds, 3),
                       "device": device, "shards_computed": len(missing)})
    return key, concat([have[i] for i in sorted(have)], kept), list(spec.columns)


def _meta(name: str, spec: FamilySpec, key: str, frame_fp: str, n_rows: int, size: int) -> dict[str, Any]:
    return {"family": name, "key": key, "code": code_version(spec.udf), "model": spec.model_ref,
            "model_fingerprint": _model_fp(spec.model_ref), "settings": spec.key_settings,
            "frame_fingerprint": frame_fp, "n_rows": n_rows, "shard_size": size,
            "n_shards": len(shard_bounds(n_rows, size)), "columns": list(spec.columns)}


def pick_engine(engine: Engine, cfg: FeaturesConfig, device: str, *, uses_model: bool) -> Engine:
    """``auto``: a model family on the CPU with one actor, where Ray is not
    started or is this machine alone, runs in this process; anything else
    (a remote cluster too) goes through Ray Data.

    Why: one actor on one node gives Ray Data no parallelism to add, only a
    fixed cost per family (a fresh actor process importing torch and
    transformers, loading the model, ~3-5 s on 2 cores), which on a small
    pool is the whole difference from a plain loop (BENCHMARKS.md, issue 16).
    Ray Data keeps what it is for: several actors, several nodes, GPUs (an
    actor frees its device when the family is done; this process would keep
    a CUDA context through the sweep), and the model-free text metrics,
    which it spreads over one task per CPU.
    """
    if engine != "auto":
        return engine
    if not uses_model or device != "cpu" or cfg.num_actors > 1:
        return "ray"
    import ray

    if not ray.is_initialized():
        return "local"
    alive = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
    try:  # the one node must be this machine, not a remote cluster's head
        here = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - e.g. a Ray Client connection: no local node
        return "ray"
    return "local" if alive in ([], [here]) else "ray"


def _cpu_share(cfg: FeaturesConfig, engine: Engine) -> tuple[int, int]:
    """(threads per actor, total CPUs): actors split the CPUs Ray offers evenly.

    Explicit ``num_cpus`` keeps the pool schedulable when Tune trials hold
    CPUs, and torch threads match it so actors never oversubscribe cores.
    """
    import os

    if engine == "ray":
        import ray

        if not ray.is_initialized():
            # compute_features(engine="ray") called alone (tests, scripts) gets a local
            # Ray; the sweep and the CLI stages start Ray, or join a cluster, first.
            ray.init(logging_level=logging.WARNING)
        # An actor must fit on one node: cap at the largest node's CPUs, not
        # the cluster total (else a multi-node pool is never scheduled).
        cluster = int(ray.cluster_resources().get("CPU", 1))
        largest = max((int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n["Alive"]), default=1)
        total = max(1, min(cluster, largest))
    else:
        # This process: the cores it may run on, and no more than Ray was given.
        total = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        import sys

        if "ray" in sys.modules and sys.modules["ray"].is_initialized():
            total = min(total, int(sys.modules["ray"].cluster_resources().get("CPU", total)))
        return max(1, total), max(1, total)
    return max(1, total // cfg.num_actors), total


def _shard_rows(canon: pd.DataFrame, bounds: list[tuple[int, int]], missing: list[int]) -> pd.DataFrame:
    """Rows of the missing shards, shard-major and length-sorted within each shard."""
    parts = []
    for i in missing:
        lo, hi = bounds[i]
        part = canon.iloc[lo:hi][["id", "text"]].copy()
        part["_len"] = part["text"].str.len()
        parts.append(part.sort_values("_len", kind="stable").drop(columns="_len"))
    return pd.concat(parts, ignore_index=True)


def _compute_shards(
    spec: FamilySpec, canon: pd.DataFrame, bounds: list[tuple[int, int]], missing: list[int],
    cfg: FeaturesConfig, *, progress: bool, engine: Engine,
) -> Iterable[tuple[int, dict[str, np.ndarray]]]:
    """Yield ``(shard index, id-sorted values)`` for each missing shard as it completes."""
    if not missing:
        return
    from tqdm.auto import tqdm

    rows = _shard_rows(canon, bounds, missing)
    starts = np.array([bounds[i][0] for i in missing])
    canon_ids = canon["id"].to_numpy()
    shard_lo_ids = canon_ids[starts]
    need = {i: bounds[i][1] - bounds[i][0] for i in missing}
    got: dict[int, list[dict[str, np.ndarray]]] = {i: [] for i in missing}
    bar = tqdm(total=len(missing), desc=f"{spec.name} shards", unit="shard", disable=not progress)
    try:
        for out in _batches(spec, rows, cfg, progress=progress, engine=engine):
            out_ids = np.asarray(out["id"], dtype=np.int64)
            # Shards are contiguous id ranges of the sorted frame: route rows by id.
            which = np.asarray(missing)[np.searchsorted(shard_lo_ids, out_ids, side="right") - 1]
            for i in np.unique(which):
                sel = which == i
                got[int(i)].append({k: np.asarray(v)[sel] for k, v in out.items()})
                need[int(i)] -= int(sel.sum())
                if need[int(i)] == 0:
                    yield int(i), _finish_shard(got.pop(int(i)), canon_ids[slice(*bounds[int(i)])], spec)
                    bar.update(1)
    finally:
        bar.close()
    if got:
        raise RuntimeError(f"features {spec.name}: shards {sorted(got)} incomplete after the run")


def _finish_shard(parts: list[dict[str, np.ndarray]], ids: np.ndarray, spec: FamilySpec) -> dict[str, np.ndarray]:
    v = {c: np.concatenate([p[c] for p in parts]) for c in ["id", *spec.columns]}
    order = np.argsort(v["id"], kind="stable")
    v = {c: a[order] for c, a in v.items()}
    if not np.array_equal(v["id"], ids):
        raise RuntimeError(f"features {spec.name}: UDF returned ids that do not match the shard's")
    if "eda_embedding" in v:
        v["eda_embedding"] = v["eda_embedding"].astype(np.float32)
    if "embedding" in v:
        v["embedding"] = v["embedding"].astype(np.float32)
        if "embedding_norm" in v:
            v["embedding_norm"] = v["embedding_norm"].astype(np.float32)
    return v


def _batches(
    spec: FamilySpec, rows: pd.DataFrame, cfg: FeaturesConfig, *, progress: bool, engine: Engine,
) -> Iterable[dict[str, np.ndarray]]:
    if engine == "local":
        udf = spec.udf(**spec.udf_kwargs)
        for lo in range(0, len(rows), spec.batch_rows):
            chunk = rows.iloc[lo:lo + spec.batch_rows]
            yield udf({"id": chunk["id"].to_numpy(), "text": chunk["text"].to_numpy(dtype=object)})
        return
    yield from _ray_batches(spec, rows, cfg, progress=progress)


def _apply_udf(batch: dict[str, np.ndarray], udf_cls: type, udf_kwargs: dict[str, Any]) -> dict[str, np.ndarray]:
    """Task form of a stateless UDF (text metrics): no actor to keep warm."""
    return udf_cls(**udf_kwargs)(batch)


def _ray_batches(
    spec: FamilySpec, rows: pd.DataFrame, cfg: FeaturesConfig, *, progress: bool,
) -> Iterable[dict[str, np.ndarray]]:
    import ray
    import ray.data

    n_threads, total = _cpu_share(cfg, "ray")
    ctx = ray.data.DataContext.get_current()
    old_bars = ctx.enable_progress_bars
    ctx.enable_progress_bars = progress
    try:
        # One block per Ray batch keeps length-sorted rows together and lets
        # results stream back (and shards be written) while later blocks run.
        blocks = [rows.iloc[lo:lo + spec.batch_rows] for lo in range(0, len(rows), spec.batch_rows)]
        ds = ray.data.from_pandas(blocks)
        if not spec.uses_model:  # text metrics, n-grams: plain tasks, no actor to keep warm
            ds = ds.map_batches(_apply_udf, fn_kwargs={"udf_cls": spec.udf, "udf_kwargs": spec.udf_kwargs},
                                batch_size=spec.batch_rows, batch_format="numpy", num_cpus=1)
        else:
            gpu = spec.udf_kwargs.get("device") == "cuda"
            if gpu and cfg.num_actors > 1:
                log.warning("features %s: %d actors each ask for a whole GPU", spec.name, cfg.num_actors)
            ds = ds.map_batches(
                spec.udf,
                fn_constructor_kwargs=spec.udf_kwargs,
                compute=ray.data.ActorPoolStrategy(size=cfg.num_actors),
                batch_size=spec.batch_rows,
                batch_format="numpy",
                num_cpus=n_threads,
                num_gpus=1 if gpu else 0,
            )
        yield from ds.iter_batches(batch_size=None, batch_format="numpy")
        if log.isEnabledFor(logging.DEBUG):  # where the time went: actor start, UDF, iterator waits
            log.debug("features %s: Ray Data stats\n%s", spec.name, ds.stats())
    finally:
        ctx.enable_progress_bars = old_bars
