"""Ray edge of partitioned selection (``partitions: auto | N``): no task holds the pool.

For one partitioning (seed, P) of a saved feature table:

1. the driver replays :func:`~dataselect.selectors.partitioning.plan_partitions`
   from the seed (a few kB: sample positions and seeds);
2. one task reads the sample rows from the embedding shards and trains FAISS
   k-means on them, its cells made even (:func:`~dataselect.selectors.partitioning.fit_partitions`);
3. Ray Data streams every shard through :func:`assign_batch`, which assigns
   rows to cells and writes each partition's rows (position, label,
   embedding) to its own folder, returning only counts and sums;
4. one task per partition reads its folder alone and runs the selector on its
   share of the budget (:func:`~dataselect.selectors.partitioned.select_partition`);
   the driver merges the picks. Herding's partitions run as a chain, one
   after another, each told what the earlier ones missed
   (:func:`~dataselect.selectors.partitioned.herding_targets`); the others
   run all at once.

The driver holds the table's index (id, label: 16 bytes a row) and the
partition counts, never embeddings. Step 3 writes one copy of the embedding
column, under the manifest folder (shared storage on a cluster, like the
feature store), removed when the stage ends; it is shared by every cell with
the same seed and P (all fractions, all partitioned selectors). The picks equal
:class:`~dataselect.selectors.partitioned.Partitioned` run in memory on the
same table (tested), up to float64 summation order in herding's targets.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import numbers
import os
import resource
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataselect.features.table_ref import TableRef, column_shards, read_columns, table_index
from dataselect.selectors.base import Selection, Selector, load_features
from dataselect.selectors.herding import Herding
from dataselect.selectors.partitioned import (
    Partitioned,
    chain_order,
    herding_targets,
    merge_partitions,
    select_partition,
)
from dataselect.selectors.partitioning import (
    Partitioning,
    fit_partitions,
    plan_partitions,
    split_budget,
)
from dataselect.selectors.stratify import PerClass

log = logging.getLogger(__name__)

__all__ = ["PreparedPartitions", "assign_batch", "prepare_partitions", "run_partitioned"]


@dataclass(frozen=True)
class PreparedPartitions:
    """One partitioning of a saved table, written to disk.

    Attributes
    ----------
    folder : Path
        ``part-<j>/`` holds partition j's rows (files of ``pos``, ``label``, ``embedding``).
    part_seeds : ndarray of int64, shape (P,)
    classes : ndarray, shape (C,)
        Sorted labels of the pool (one 0 when the table has no labels).
    counts : ndarray of int64, shape (P, C)
    sums : ndarray of float64, shape (P, C, d)
        Embedding sum of every (partition, class) cell, for herding's targets.
    seconds : dict
        Wall time of the fit and the assignment.
    """

    folder: Path
    part_seeds: np.ndarray
    classes: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    seconds: dict[str, float]


def _entropy(seed: int | Sequence[int]) -> int | list[int]:
    """A seed or a stream's entropy (``selectors.base.stream_seed``), as ``default_rng`` takes it."""
    return int(seed) if isinstance(seed, numbers.Integral) else [int(s) for s in seed]


def plan_key(ref: TableRef, selector: Partitioned, seed: int | Sequence[int]) -> str:
    """Cells that share this key share one partitioning (fit, assignment, files)."""
    payload = {"table": ref.key, "partitions": selector.partitions, "sample": selector.partition_sample,
               "niter": selector.partition_niter, "seed": _entropy(seed)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _fit_task(ref: TableRef, sample: np.ndarray, n_parts: int, niter: int, seed: int) -> Partitioning:
    x = read_columns(ref, ["embedding"], rows=sample)["embedding"]
    return fit_partitions(x, n_parts, niter, seed)


def _embedding_array(col: Any) -> np.ndarray:
    """(b, d) float array from an Arrow fixed-size-list (or Ray tensor) column."""
    import pyarrow as pa

    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_fixed_size_list(col.type):
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
    return np.stack(col.to_numpy(zero_copy_only=False))


def _write_atomic(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    # Scratch copies, read once: no dictionary (pyarrow tries one per float
    # column, 2/3 of the assignment's write time) and no compression (floats
    # do not compress).
    pq.write_table(table, tmp, compression="none", use_dictionary=False)
    os.replace(tmp, path)


def assign_batch(batch: Any, *, partitioning: Partitioning, lookup: Any, out_dir: str) -> dict[str, np.ndarray]:
    """Ray Data UDF: assign a batch of shard rows, write each partition's rows, return sums.

    ``lookup`` holds ``canon_ids`` (sorted ids), ``frame_pos`` (frame position
    of each) and ``label_idx`` (class index of each), so rows get their
    position and label without a join. Files are named by the batch's first
    canonical row, so a retried batch overwrites its own files.
    """
    import ray

    from dataselect.features.store import to_arrow
    from dataselect.selectors.partitioning import assign_partitions

    if isinstance(lookup, ray.ObjectRef):
        lookup = ray.get(lookup)
    ids = np.asarray(batch.column("id").to_numpy(), dtype=np.int64)
    x = _embedding_array(batch.column("embedding"))
    canon = np.searchsorted(lookup["canon_ids"], ids)
    pos, cls = lookup["frame_pos"][canon], lookup["label_idx"][canon]
    part = assign_partitions(x, partitioning)
    n_classes = int(lookup["n_classes"])
    cell = part * n_classes + cls
    cells = np.unique(cell)
    sums = np.zeros((len(cells), x.shape[1]))
    np.add.at(sums, np.searchsorted(cells, cell), x.astype(np.float64))
    first = int(canon.min())
    for j in np.unique(part):
        mine = part == j
        values = {"pos": pos[mine], "label": cls[mine], "embedding": x[mine]}
        _write_atomic(to_arrow(values), Path(out_dir) / f"part-{j:05d}" / f"rows-{first:012d}.parquet")
    return {"block": np.full(len(cells), first, dtype=np.int64), "partition": cells // n_classes,
            "label_idx": cells % n_classes, "count": np.bincount(np.searchsorted(cells, cell)),
            "sum": sums}


def prepare_partitions(
    ref: TableRef, selector: Partitioned, seed: int | Sequence[int], work_dir: Path, *,
    index: dict[str, np.ndarray] | None = None, batch_size: int = 8192,
) -> PreparedPartitions:
    """Steps 1-3 of the module docstring for one (table, P, seed); ``seed`` may be a
    selector stream's entropy (``selectors.base.stream_seed``)."""
    import ray

    index = index if index is not None else table_index(ref)
    n = len(index["id"])
    n_parts = int(selector.partitions)
    if n_parts > n:
        raise ValueError(f"partitions must be <= n={n} rows; got {n_parts}")
    plan = plan_partitions(n, n_parts, selector.partition_sample, np.random.default_rng(_entropy(seed)))
    t0 = time.perf_counter()
    fit = ray.remote(num_cpus=1)(_fit_task)
    partitioning = ray.get(fit.remote(ref, plan.sample, n_parts, selector.partition_niter, plan.kmeans_seed))
    t1 = time.perf_counter()
    if "label" in index:
        classes, label_idx = np.unique(index["label"], return_inverse=True)
    else:
        classes, label_idx = np.zeros(1, dtype=np.int64), np.zeros(n, dtype=np.int64)
    order = np.argsort(index["id"], kind="stable")
    lookup = ray.put({"canon_ids": index["id"][order], "frame_pos": order.astype(np.int64),
                      "label_idx": label_idx[order].astype(np.int64), "n_classes": len(classes)})
    folder = Path(work_dir)
    shutil.rmtree(folder, ignore_errors=True)  # a crashed earlier run's files must not mix in
    folder.mkdir(parents=True)
    shards = column_shards(ref, "embedding")
    ds = ray.data.read_parquet([str(p) for p in shards.paths]).select_columns(["id", "embedding"])
    out = ds.map_batches(assign_batch, batch_format="pyarrow", batch_size=batch_size, num_cpus=1,
                         fn_kwargs={"partitioning": partitioning, "lookup": lookup, "out_dir": str(folder)})
    rows = [b for b in out.iter_batches(batch_format="numpy", batch_size=None)]
    summary = {k: np.concatenate([np.asarray(list(b[k]) if b[k].dtype == object else b[k]) for b in rows])
               for k in ("block", "partition", "label_idx", "count", "sum")}
    # Sum in block order, not arrival order: the same floats every run.
    o = np.lexsort((summary["label_idx"], summary["partition"], summary["block"]))
    counts = np.zeros((n_parts, len(classes)), dtype=np.int64)
    sums = np.zeros((n_parts, len(classes), summary["sum"].shape[-1]))
    for i in o:
        counts[summary["partition"][i], summary["label_idx"][i]] += summary["count"][i]
        sums[summary["partition"][i], summary["label_idx"][i]] += summary["sum"][i]
    if counts.sum() != n:
        raise RuntimeError(f"partition assignment saw {counts.sum()} rows; the table has {n}")
    return PreparedPartitions(folder, plan.part_seeds, classes, counts, sums,
                              {"fit": t1 - t0, "assign": time.perf_counter() - t1})


def _partition_task(
    folder: str, inner: Selector, shares: np.ndarray, classes: np.ndarray, seed: int,
    targets: np.ndarray | None,
) -> dict[str, Any]:
    """One partition: read its rows, select, report where and at what memory it ran.

    ``classes`` decodes the stored class indices (all of the pool's labels).
    """
    import pyarrow.parquet as pq
    import ray

    rss0 = _rss_mib()
    t0 = time.perf_counter()
    # Rows in ascending pool position, read file by file straight into their
    # slots: the task holds one copy of its embeddings (plus one file), not
    # the Arrow table, its concatenation and a reordered copy.
    files = sorted(Path(folder).glob("rows-*.parquet"))
    pos = np.concatenate([pq.read_table(f, columns=["pos"]).column("pos").to_numpy() for f in files])
    order = np.argsort(pos, kind="stable")
    slot = np.empty_like(order)
    slot[order] = np.arange(len(order))
    pos = pos[order]
    x = label = None
    lo = 0
    for f in files:
        part = pq.read_table(f, columns=["label", "embedding"])
        rows = slot[lo : lo + part.num_rows]
        lo += part.num_rows
        emb = _embedding_array(part.column("embedding"))
        if x is None:
            x = np.empty((len(pos), emb.shape[1]), dtype=emb.dtype)
            label = np.empty(len(pos), dtype=np.int64)
        x[rows] = emb
        label[rows] = part.column("label").to_numpy()
        del part, emb
    feats = {"embedding": x, "label": classes[label]}
    owner = type(inner.inner if isinstance(inner, PerClass) else inner).__name__
    feats, _ = load_features(owner, feats, tuple(sorted(set(inner.required()) | {"embedding"})))
    picks, scores, info, sums = select_partition(inner, feats, pos, shares, classes, seed, targets)
    return {"picks": picks, "scores": scores, "info": info, "sums": sums,
            "stats": {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                      "rows": len(pos), "picks": len(picks), "seconds": time.perf_counter() - t0,
                      "rss_start_mib": rss0, "peak_rss_mib": _peak_rss_mib()}}


def _rss_mib() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return float("nan")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run_partitioned(
    prepared: PreparedPartitions, selector: Partitioned, budget: int, *,
    task_options: dict[str, Any] | None = None,
) -> Selection:
    """Step 4: one Ray task per partition with a non-zero share; merged picks.

    ``task_options`` go to ``ray.remote`` of every partition task (e.g.
    ``{"max_calls": 1}`` for a fresh worker, so its peak RSS is its own).
    ``info["tasks"]`` lists each task's node, rows, seconds and peak RSS.
    """
    import ray

    base = selector.inner.inner if isinstance(selector.inner, PerClass) else selector.inner
    mode = selector.inner.per_class if isinstance(selector.inner, PerClass) else "none"
    counts, sums = prepared.counts, prepared.sums
    if mode == "none":
        counts, sums = counts.sum(axis=1, keepdims=True), sums.sum(axis=1, keepdims=True)
    shares = split_budget(counts, budget, mode)
    remote = ray.remote(**{"num_cpus": 1, **(task_options or {})})(_partition_task)

    def launch(j: int, targets: np.ndarray | None = None) -> Any:
        return remote.remote(str(prepared.folder / f"part-{j:05d}"), selector.inner, shares[j],
                             prepared.classes, int(prepared.part_seeds[j]), targets)

    jobs = np.flatnonzero(shares.sum(axis=1))
    if isinstance(base, Herding):
        # herding_targets' chain: each partition corrects what the earlier ones missed.
        done = np.zeros(len(counts), dtype=bool)
        picked = np.zeros(sums.shape[1:])
        by_part = {}
        for j in chain_order(shares):
            by_part[j] = ray.get(launch(j, herding_targets(sums, counts, shares, picked, done, j)))
            picked += by_part[j]["sums"]
            done[j] = True
        got = [by_part[j] for j in jobs]
    else:
        got = ray.get([launch(j) for j in jobs])
    merged = merge_partitions([(g["picks"], g["scores"], g["info"]) for g in got],
                              counts.sum(axis=1), shares, mode)
    stats = [{"partition": int(j), **g["stats"]} for j, g in zip(jobs, got, strict=True)]
    return Selection(merged.indices, merged.scores,
                     {**merged.info, "tasks": stats, "prepare_seconds": prepared.seconds})
