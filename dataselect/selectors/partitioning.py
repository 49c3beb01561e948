"""Partitioning a pool: k-means on a sample, cells made even, every row to its cell, budget shares.

The geometry behind :mod:`dataselect.selectors.partitioned`, as pure
functions over arrays: how many partitions a task's memory needs, the
k-means cells with offsets that keep them near the mean size, each row's
cell, and each cell's (and class's) share of the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dataselect.selectors.base import largest_remainder
from dataselect.selectors.kmeans import fit_kmeans
from dataselect.selectors.stratify import balanced_shares, class_shares

__all__ = ["BALANCE", "DEFAULT_TASK_BYTES", "MEMORY_FACTOR", "PartitionPlan", "Partitioning",
           "assign_partitions", "auto_partitions", "fit_partitions", "plan_partitions", "split_budget"]

MEMORY_FACTOR = 3.0
"""Bytes a selection task holds per byte of its embedding rows: the rows
themselves, the selector's O(n) working set and float64 blocks (~1x), and
k-means partitions up to ~1.5x the mean size."""

DEFAULT_TASK_BYTES = 4 << 30
"""Memory a task may use when nothing better is known (pure callers)."""

BALANCE = 1.1
"""Largest partition share of the k-means sample, as a multiple of the mean."""

ASSIGN_BLOCK = 1 << 16  # rows per float64 distance block in assign_partitions


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
    return Partitioning(c, balance_offsets(cost, cap))


def balance_offsets(cost: np.ndarray, cap: int) -> np.ndarray:
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
    for lo in range(0, len(x), ASSIGN_BLOCK):
        out[lo : lo + ASSIGN_BLOCK] = _cost(x[lo : lo + ASSIGN_BLOCK], partitioning.centroids,
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
