"""Partitioned selection: cluster once, select inside each cluster, merge.

A pool that outgrows one task's memory is split the way large-scale pipelines
split it: k-means on a sample, its cells made even (:class:`Partitioning`),
every row to its cell, then the selector runs on each partition alone with
its share of the budget (SemDeDup [1]_ and D4 [2]_ cluster first and work
inside clusters; distributed greedy [3]_ runs the greedy per machine and
merges). The pieces here are pure
functions over arrays, shared by the in-memory :class:`Partitioned` wrapper and
the Ray edge (``dataselect.sweep.partition_stage``), which must give the same picks.

References
----------
.. [1] A. Abbas, K. Tirumala, D. Simig, S. Ganguli, A. S. Morcos, "SemDeDup:
   Data-efficient learning at web-scale through semantic deduplication",
   arXiv:2303.09540, 2023.
.. [2] K. Tirumala, D. Simig, A. Aghajanyan, A. S. Morcos, "D4: Improving LLM
   pretraining via document de-duplication and diversification", NeurIPS 2023.
.. [3] B. Mirzasoleiman, A. Karbasi, R. Sarkar, A. Krause, "Distributed
   submodular maximization: identifying representative elements in massive
   data", NeurIPS 2013.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataselect.selectors.base import (
    InvalidParameterError,
    Selection,
    Selector,
    Wrapping,
    check,
    is_int,
)
from dataselect.selectors.herding import Herding, herding
from dataselect.selectors.partitioning import (
    DEFAULT_TASK_BYTES,
    assign_partitions,
    auto_partitions,
    fit_partitions,
    plan_partitions,
    split_budget,
)
from dataselect.selectors.registry import register_partitioning
from dataselect.selectors.stratify import PerClass

__all__ = ["PARTITIONABLE", "Partitioned", "chain_order", "herding_targets", "merge_partitions",
           "partitioned_select", "resolve_partitions", "select_partition"]

PARTITIONABLE = ("random", "kcenter", "kmeans", "herding", "typiclust")
"""Selectors whose objective is local in embedding space, so a cluster-wise
split loses little: the diversity family. Scores of quality / importance
selectors are global rankings and gain nothing from partitioning."""

def herding_targets(
    cell_sums: np.ndarray, counts: np.ndarray, shares: np.ndarray, picked_sums: np.ndarray,
    done: np.ndarray, j: int,
) -> np.ndarray:
    """Mean each class of partition ``j`` herds toward, shape (C, d): the chain rule.

    Herding every partition toward its own mean leaves independent errors
    whose share-weighted sum grows like sqrt(P) times the exact gap (measured:
    2-3x at P = 4-8), plus the rounding of the shares. So partitions herd in
    a chain: partition ``j`` is shifted by what the partitions before it
    missed, spread over those still to run,

    ``t_j = mu_j + (B mu - S_done - sum_{k not done} b_k mu_k) / sum_{k not done} b_k``

    per class (``S_done``: sum of the picks so far). The last partition
    absorbs the rest, so the merged gap is about one herding error, as for
    the exact run. Each partition still scans only its own rows (P x less
    work than exact herding), but herding partitions run one after another.

    Parameters
    ----------
    cell_sums : ndarray of float64, shape (P, C, d)
        Embedding sum of each (partition, class) cell.
    counts, shares : ndarray of int64, shape (P, C)
        Rows and budget of each cell (:func:`split_budget`).
    picked_sums : ndarray of float64, shape (C, d)
        Sum of the rows picked by the partitions already done.
    done : ndarray of bool, shape (P,)
        Partitions already done (``j`` is not).
    j : int
    """
    counts = np.asarray(counts, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cell_mean = np.where(counts[..., None] > 0, cell_sums / counts[..., None], 0.0)
    mu = cell_sums.sum(axis=0) / np.maximum(counts.sum(axis=0), 1)[:, None]  # (C, d)
    b = shares.astype(np.float64)
    left = ~np.asarray(done, dtype=bool)
    need = b.sum(axis=0)[:, None] * mu - picked_sums - np.einsum("pc,pcd->cd", b[left], cell_mean[left])
    return cell_mean[j] + need / np.maximum(b[left].sum(axis=0), 1)[:, None]


def chain_order(shares: np.ndarray) -> np.ndarray:
    """Partitions with a share, smallest share first: the largest corrects last."""
    total = shares.sum(axis=1)
    jobs = np.flatnonzero(total)
    return jobs[np.lexsort((jobs, total[jobs]))]


def _unwrap(selector: Selector) -> tuple[Selector, str]:
    if isinstance(selector, PerClass):
        return selector.inner, selector.per_class
    return selector, "none"


def select_partition(
    inner: Selector, features: Mapping[str, np.ndarray], rows: np.ndarray, shares: np.ndarray,
    classes: np.ndarray, seed: int, targets: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Run ``inner`` on one partition; global positions, scores, info.

    Parameters
    ----------
    inner : Selector
        The selector, or a :class:`PerClass` around it.
    features : mapping
        The partition's rows only, in ascending global position.
    rows : ndarray of int64
        Their global positions (ascending).
    shares : ndarray of int64, shape (C,)
        This partition's row of :func:`split_budget`.
    classes : ndarray, shape (C,)
        Sorted labels of the whole pool (unused without ``per_class``).
    seed : int
        ``PartitionPlan.part_seeds[j]``.
    targets : ndarray of float64, shape (C, d), optional
        Herding only: the mean each class of this partition tracks
        (:func:`herding_targets`).

    Returns
    -------
    picks, scores, info
        Global positions, scores (or None), the inner selector's info.
    picked_sums : ndarray of float64, shape (C, d) or None
        Embedding sum of the picks per class (herding's chain), else None.
    """
    base, mode = _unwrap(inner)
    rng = np.random.default_rng(int(seed))

    def run(feats: dict[str, np.ndarray], m: int, share: int, c: int,
            gen: np.random.Generator) -> Selection:
        if targets is not None:
            picks, gaps = herding(feats["embedding"], share, targets[c])
            return Selection(picks, gaps, {"mean_gap": float(gaps[-1])})
        return base._select(feats, m, share, gen)

    sums = None if targets is None else np.zeros(targets.shape)
    if mode == "none":
        feats = {k: features[k] for k in base.required()}
        sel = run(feats, len(rows), int(shares[0]), 0, rng)
        if sums is not None:
            sums[0] = features["embedding"][sel.indices].sum(axis=0, dtype=np.float64)
        return rows[sel.indices], sel.scores, sel.info, sums
    # Like PerClass, one generator per class spawned in label order.
    seeds = rng.integers(0, 2**63 - 1, size=len(classes))
    label = features["label"]
    picks, scores, infos = [], [], {}
    for c, share in enumerate(shares):
        if share == 0:
            continue
        mine = np.flatnonzero(label == classes[c])
        sub = {k: features[k][mine] for k in base.required()}
        sel = run(sub, len(mine), int(share), c, np.random.default_rng(seeds[c]))
        if sums is not None:
            sums[c] = sub["embedding"][sel.indices].sum(axis=0, dtype=np.float64)
        picks.append(rows[mine[sel.indices]])
        scores.append(sel.scores)
        infos[str(classes[c].item() if isinstance(classes[c], np.generic) else classes[c])] = sel.info
    has = all(s is not None for s in scores)
    return np.concatenate(picks), np.concatenate(scores) if has else None, {"classes": infos}, sums


def merge_partitions(
    parts: Sequence[tuple[np.ndarray, np.ndarray | None, dict[str, Any]]],
    sizes: np.ndarray, shares: np.ndarray, per_class: str,
) -> Selection:
    """One :class:`Selection` from the partitions' results, in partition order.

    ``info`` keeps each partition's size, allocation and the inner selector's
    info; ``radius_bound`` (k-center) is the largest in-partition radius, an
    upper bound on the covering radius of the merged subset.
    """
    idx = np.concatenate([p[0] for p in parts])
    has = all(p[1] is not None for p in parts)
    info: dict[str, Any] = {
        "partitions": len(sizes),
        "partition_sizes": [int(s) for s in sizes],
        "allocation": [int(s) for s in shares.sum(axis=1)],
        "per_class": per_class,
        "partition_info": [p[2] for p in parts],
    }
    radii = [p[2].get("radius") for p in parts]
    if radii and all(r is not None for r in radii):
        info["radius_bound"] = float(max(radii))
    return Selection(idx, np.concatenate([p[1] for p in parts]) if has else None, info)


def partitioned_select(
    selector: Selector, features: Mapping[str, np.ndarray], budget: int, assignment: np.ndarray,
    part_seeds: np.ndarray,
) -> Selection:
    """Select ``budget`` rows partition by partition; inputs are trusted.

    Parameters
    ----------
    selector : Selector
        Any selector of :data:`PARTITIONABLE`, or a :class:`PerClass` around one.
    features : mapping of str to ndarray
        Checked columns, ``n`` rows (``label`` included under ``per_class``).
    budget : int
        ``1 <= budget <= n``; filled exactly (largest remainder, :func:`split_budget`).
    assignment : ndarray of int, shape (n,)
        Partition of every row, in ``[0, P)``; P = ``len(part_seeds)``.
    part_seeds : ndarray of int64, shape (P,)
        Seed of each partition's selection.

    Returns
    -------
    Selection
        Global positions grouped by partition (ascending), each group in the
        inner selector's pick order (grouped by class under ``per_class``).
    """
    base, mode = _unwrap(selector)
    n_parts = len(part_seeds)
    assignment = np.asarray(assignment, dtype=np.int64)
    if mode == "none":
        classes = np.zeros(1, dtype=np.int64)
        counts = np.bincount(assignment, minlength=n_parts)[:, None]
    else:
        classes, label_idx = np.unique(features["label"], return_inverse=True)
        counts = np.zeros((n_parts, len(classes)), dtype=np.int64)
        np.add.at(counts, (assignment, label_idx), 1)
    shares = split_budget(counts, budget, mode)
    order = np.argsort(assignment, kind="stable")  # rows grouped by partition, ascending within
    bounds = np.concatenate([[0], np.cumsum(counts.sum(axis=1))])
    names = set(base.required()) | ({"label"} if mode != "none" else set())

    def part(j: int, targets: np.ndarray | None = None) -> tuple:
        rows = order[bounds[j] : bounds[j + 1]]
        sub = {k: features[k][rows] for k in names}
        return select_partition(selector, sub, rows, shares[j], classes, int(part_seeds[j]), targets)

    if not isinstance(base, Herding):
        parts = [part(j)[:3] for j in np.flatnonzero(shares.sum(axis=1))]
        return merge_partitions(parts, counts.sum(axis=1), shares, mode)
    x = features["embedding"]
    cell_sums = np.zeros((n_parts, len(classes), x.shape[1]))
    np.add.at(cell_sums, (assignment, np.zeros(len(x), dtype=np.int64) if mode == "none" else label_idx),
              x.astype(np.float64))
    done = np.zeros(n_parts, dtype=bool)
    picked = np.zeros((len(classes), x.shape[1]))
    got = {}
    for j in chain_order(shares):
        *got[j], sums = part(j, herding_targets(cell_sums, counts, shares, picked, done, j))
        picked += sums
        done[j] = True
    return merge_partitions([tuple(got[j]) for j in sorted(got)], counts.sum(axis=1), shares, mode)


@dataclass(frozen=True)
class Partitioned(Wrapping, Selector):
    """Run ``inner`` inside k-means partitions of the pool and merge the picks.

    Parameters
    ----------
    inner : Selector
        A selector of :data:`PARTITIONABLE`, or a ``PerClass`` around one.
    partitions : int or "auto", default="auto"
        Number of partitions P >= 2 (``get_selector`` returns the plain
        selector for 1); ``auto``: :func:`auto_partitions` with
        :data:`DEFAULT_TASK_BYTES` (the select stage resolves it from the
        cluster's memory per CPU before the manifest key is taken).
    partition_sample : int, default=256
        Rows per partition in the k-means training sample (FAISS's own
        ``max_points_per_centroid``): P x 256 rows bound the training cost
        whatever the pool size.
    partition_niter : int, default=20
        Lloyd iterations of that k-means.

    Notes
    -----
    From the seed, in order: the training sample, the k-means seed, one seed
    per partition (:func:`plan_partitions`). Every row goes to its cell:
    nearest centroid plus an offset that keeps any cell within 1.1x the mean
    share of the sample (:func:`fit_partitions`, :func:`assign_partitions`);
    the budget is split by largest remainder over partition sizes, per class first under ``per_class``
    (:func:`split_budget`); ``inner`` runs on each partition's rows in
    ascending position. Picks are grouped by partition. k-center's
    covering radius is at most the largest in-partition radius
    (``info["radius_bound"]``); herding's partitions run as a chain, each
    correcting the mean the earlier ones missed (:func:`herding_targets`),
    so its gap stays near the exact one. Quality against the exact
    selectors is tested on clustered data (``tests/selectors/test_partitioned.py``).
    An unseeded inner selector (herding) stays unseeded: the select stage
    runs it once, at seed 0's partitioning.
    """

    inner: Selector
    partitions: int | str = "auto"
    partition_sample: int = 256
    partition_niter: int = 20

    def __post_init__(self) -> None:
        base, _ = _unwrap(self.inner)
        owner = type(base).__name__
        check("Partitioned", "inner", self.inner,
              isinstance(self.inner, Selector) and not isinstance(self.inner, Partitioned),
              "a (non-Partitioned) Selector")
        check(owner, "partitions", base.name, base.name in PARTITIONABLE,
              f"set only on one of {list(PARTITIONABLE)} (selector name)")
        check(owner, "partitions", self.partitions,
              self.partitions == "auto" or (is_int(self.partitions) and self.partitions >= 2),
              "'auto' or an int >= 2")
        for attr in ("partition_sample", "partition_niter"):
            value = getattr(self, attr)
            check(owner, attr, value, is_int(value) and value >= 1, "an int >= 1")
        self._refuse_initial(owner, base, f"partitions={self.partitions!r}")

    def required(self) -> tuple[str, ...]:
        return self._required_with("embedding")

    def params(self) -> dict[str, Any]:
        return {**self.inner.params(), "partitions": self.partitions,
                "partition_sample": self.partition_sample, "partition_niter": self.partition_niter}

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        x = features["embedding"]
        resolved = resolve_partitions(self, n, x.shape[1], DEFAULT_TASK_BYTES, itemsize=x.itemsize)
        if not isinstance(resolved, Partitioned):
            return resolved._select(features, n, budget, rng)
        n_parts = int(resolved.partitions)
        if n_parts > n:
            raise InvalidParameterError(
                f"{type(_unwrap(self.inner)[0]).__name__}.partitions must be <= n={n} rows; got {n_parts}")
        plan = plan_partitions(n, n_parts, self.partition_sample, rng)
        cells = fit_partitions(x[plan.sample], n_parts, self.partition_niter, plan.kmeans_seed)
        return partitioned_select(self.inner, features, budget, assign_partitions(x, cells),
                                  plan.part_seeds)


def resolve_partitions(
    selector: Selector, n_rows: int, dim: int, task_bytes: float, *, itemsize: int = 4
) -> Selector:
    """``partitions: auto`` made concrete: the inner selector when the pool fits, else P.

    Any other selector comes back unchanged. Called before a manifest key is
    taken, so the key holds the P that ran (and a pool that fits keeps the
    unpartitioned key and picks).
    """
    if not isinstance(selector, Partitioned) or selector.partitions != "auto":
        return selector
    n_parts = auto_partitions(n_rows, dim, task_bytes, itemsize=itemsize)
    if n_parts == 1:
        return selector.inner
    return dataclasses.replace(selector, partitions=n_parts)


register_partitioning(Partitioned, PARTITIONABLE)
