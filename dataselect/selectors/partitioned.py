"""Partitioned selection: cluster once, select inside each cluster, merge.

A pool that outgrows one task's memory is split the way large-scale pipelines
split it: k-means on a sample, its cells made even (:class:`Partitioning`),
every row to its cell, then the selector runs on each partition alone with
its share of the budget (SemDeDup [1]_ and D4 [2]_ cluster first and work
inside clusters; distributed greedy [3]_ runs the greedy per machine and
merges). The pieces here are pure
functions over arrays, shared by the in-memory :class:`Partitioned` wrapper and
the Ray edge (``dataselect.partition_stage``), which must give the same picks.

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
import math
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
    largest_remainder,
)
from dataselect.selectors.herding import Herding, herding
from dataselect.selectors.kmeans import fit_kmeans
from dataselect.selectors.stratify import PerClass, balanced_shares, class_shares

__all__ = [
    "PARTITIONABLE",
    "PartitionPlan",
    "Partitioned",
    "Partitioning",
    "assign_partitions",
    "auto_partitions",
    "fit_partitions",
    "chain_order",
    "herding_targets",
    "merge_partitions",
    "partitioned_select",
    "plan_partitions",
    "resolve_partitions",
    "select_partition",
    "split_budget",
]

PARTITIONABLE = ("random", "kcenter", "kmeans", "herding", "typiclust")
"""Selectors whose objective is local in embedding space, so a cluster-wise
split loses little: the diversity family. Scores of quality / importance
selectors are global rankings and gain nothing from partitioning."""

MEMORY_FACTOR = 3.0
"""Bytes a selection task holds per byte of its embedding rows: the rows
themselves, the selector's O(n) working set and float64 blocks (~1x), and
k-means partitions up to ~1.5x the mean size."""

DEFAULT_TASK_BYTES = 4 << 30
"""Memory a task may use when nothing better is known (pure callers)."""

BALANCE = 1.1
"""Largest partition share of the k-means sample, as a multiple of the mean."""

_ASSIGN_BLOCK = 1 << 16  # rows per float64 distance block in assign_partitions


def auto_partitions(n_rows: int, dim: int, task_bytes: float, *, itemsize: int = 4) -> int:
    """``partitions: auto``: fewest partitions whose rows fit one task.

    ``P = ceil(n_rows * dim * itemsize * MEMORY_FACTOR / task_bytes)``; 1 (no
    partitioning) when the whole pool fits. E.g. 2 M x 384 float32 (3.1 GB)
    with 4 GiB per task gives P = 3; 100 M x 768 with 8 GiB gives P = 108.
    """
    need = n_rows * dim * itemsize * MEMORY_FACTOR
    return max(1, min(n_rows, math.ceil(need / task_bytes)))


@dataclass(frozen=True)
class PartitionPlan:
    """Everything random in a partitioning, drawn once from the selection seed.

    Attributes
    ----------
    n_partitions : int
    sample : ndarray of int64
        Sorted row positions k-means is trained on.
    kmeans_seed : int
        FAISS seed for that training.
    part_seeds : ndarray of int64, shape (n_partitions,)
        Seed of the selection inside each partition.
    """

    n_partitions: int
    sample: np.ndarray
    kmeans_seed: int
    part_seeds: np.ndarray


def plan_partitions(
    n: int, n_partitions: int, sample_per_partition: int, rng: np.random.Generator
) -> PartitionPlan:
    """Draw the training sample and seeds, in this order, from ``rng``.

    The order is part of the contract: the Ray edge replays it from the same
    seed, so both paths partition identically. Inputs are trusted.
    """
    size = min(n, n_partitions * sample_per_partition)
    sample = np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)
    kmeans_seed = int(rng.integers(2**31 - 1))
    part_seeds = rng.integers(0, 2**63 - 1, size=n_partitions, dtype=np.int64)
    return PartitionPlan(n_partitions, sample, kmeans_seed, part_seeds)


@dataclass(frozen=True)
class Partitioning:
    """Where rows go: ``argmin_k ||x - c_k||^2 + offsets[k]`` (a power diagram).

    The offsets are k-means' cells made even: without them a cell can hold
    most of the pool (a centroid averaging many clusters has a small norm and
    wins every row far from the others: 85 % of a 2 M x 384 pool of 256
    blobs fell in one of 4 cells), and a partition must fit one task.
    """

    centroids: np.ndarray
    """(P, d) float64."""
    offsets: np.ndarray
    """(P,) float64, added to each centroid's squared distance."""


def fit_partitions(x_sample: np.ndarray, n_partitions: int, niter: int, seed: int,
                   balance: float = BALANCE) -> Partitioning:
    """Single-threaded FAISS k-means on the sample, then offsets that leave no
    cell more than ``balance`` x the mean share of the sample."""
    c = np.asarray(fit_kmeans(x_sample, n_partitions, niter, seed)[0], dtype=np.float64)
    cost = _cost(x_sample, c, np.zeros(len(c)))
    cap = max(1, math.ceil(balance * len(x_sample) / n_partitions))
    return Partitioning(c, _balance_offsets(cost, cap))


def _balance_offsets(cost: np.ndarray, cap: int) -> np.ndarray:
    """Offsets b such that ``argmin(cost + b)`` puts at most ``cap`` rows in any column.

    Price rounds (an auction, as in size-constrained k-means, Bradley et al.
    2000): the fullest cell's price rises by the smallest amount that moves
    its excess rows (those closest to their next-best cell) out, plus eps.
    Prices only rise, so rows move only away from cells that were over;
    deterministic. Raises if the rounds run out (not seen: tens of rounds on
    samples of 1,024-8,192 rows).
    """
    n, k = cost.shape
    b = np.zeros(k)
    if cap * k < n:
        raise ValueError(f"cannot fit {n} rows in {k} cells of at most {cap}")
    # Each raise overshoots by eps, so prices cannot creep up in ever smaller
    # steps while two near-full cells trade the same rows (with eps -> 0 they do).
    eps = 1e-3 * (float(cost.max() - cost.min()) or 1.0)
    for _ in range(1000 * k):
        total = cost + b
        owner = total.argmin(axis=1)
        sizes = np.bincount(owner, minlength=k)
        j = int(sizes.argmax())
        excess = int(sizes[j]) - cap
        if excess <= 0:
            break
        mine = total[owner == j]
        margin = np.delete(mine, j, axis=1).min(axis=1) - mine[:, j]  # >= 0: price of leaving
        b[j] += np.partition(margin, excess - 1)[excess - 1] + eps
    else:
        raise RuntimeError(f"cell offsets did not settle in {1000 * k} rounds")
    return b


def _cost(x: np.ndarray, c: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``||c||^2 - 2 x.c + offsets`` in float64: squared distance less the row's own norm."""
    d = np.asarray(x, dtype=np.float64) @ c.T
    d *= -2
    d += np.einsum("ij,ij->i", c, c) + offsets
    return d


def assign_partitions(x: np.ndarray, partitioning: Partitioning | np.ndarray) -> np.ndarray:
    """Cell of each row, int64 (n,); ties to the lower cell. Bare centroids: no offsets.

    Costs are float64 row by row, in the sense that a row's result does not
    depend on which other rows share its block, so Ray Data batches of any
    size assign as one in-memory call does (FAISS's float32 search would flip
    near-ties between batch sizes).
    """
    if not isinstance(partitioning, Partitioning):
        c = np.asarray(partitioning, dtype=np.float64)
        partitioning = Partitioning(c, np.zeros(len(c)))
    out = np.empty(len(x), dtype=np.int64)
    for lo in range(0, len(x), _ASSIGN_BLOCK):
        out[lo : lo + _ASSIGN_BLOCK] = _cost(x[lo : lo + _ASSIGN_BLOCK], partitioning.centroids,
                                             partitioning.offsets).argmin(axis=1)
    return out


def split_budget(counts: np.ndarray, budget: int, per_class: str) -> np.ndarray:
    """Budget of every (partition, class) cell, shape of ``counts`` (P, C).

    ``per_class="none"``: partitions share ``budget`` by largest remainder over
    their sizes (``counts`` summed over classes; the result is in column 0).
    Otherwise the class budgets are fixed first, globally, exactly as
    :class:`~dataselect.selectors.stratify.PerClass` fixes them (proportional
    or balanced over the class sizes), and each class's budget is then split
    over the partitions by largest remainder over that class's rows in each.
    Class first, not partition first: rounding per partition would move up to
    P rows between classes, so class shares would no longer be exact.
    """
    counts = np.asarray(counts, dtype=np.int64)
    shares = np.zeros_like(counts)
    if per_class == "none":
        shares[:, 0] = largest_remainder(counts.sum(axis=1), budget)
        return shares
    totals = counts.sum(axis=0)
    per = class_shares(totals, budget) if per_class == "proportional" else balanced_shares(totals, budget)
    for c, b in enumerate(per):
        if b:
            shares[:, c] = largest_remainder(counts[:, c], int(b))
    return shares


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
