"""Difficulty balanced against coverage: ``ccs`` (score strata) and ``d2`` (message passing).

Keeping only the hardest rows fails at high pruning rates (small budgets):
the subset loses the easy, dense regions the model also needs. Both
selectors here read a per-row difficulty (:mod:`dataselect.selectors.difficulty`)
and spread the budget over it: CCS over equal-width strata of the score,
D2 over a k-NN graph of the embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dataselect.errors import DataError
from dataselect.selectors.base import Selection, check, is_int, is_real
from dataselect.selectors.difficulty import DifficultyScored, prune_hardest
from dataselect.selectors.neighbours import check_metric, knn_table, metric_rows
from dataselect.selectors.registry import register

__all__ = ["CCS", "D2", "ccs_allocation", "ccs_strata", "d2_greedy"]


@register("ccs")
@dataclass(frozen=True)
class CCS(DifficultyScored):
    """Coverage-centric coreset selection, Algorithm 1 of [1]_.

    1. Prune the ``floor(beta * n)`` hardest rows (likely mislabelled or
       too hard to help at a small budget).
    2. Split the remaining difficulty range into ``n_strata`` equal-width
       strata ``B_1..B_k``.
    3. While strata remain: take the stratum ``B`` with the fewest rows,
       give it ``m_B = min(|B|, floor(m / r))`` rows, ``m`` the budget left
       and ``r`` the strata left, sampled uniformly without replacement
       inside ``B``; then ``m <- m - m_B`` and drop ``B``.

    Small strata (rare difficulty levels) are taken whole; the budget they
    cannot use flows to the larger ones, so the subset covers the whole
    difficulty range instead of concentrating on one end [1]_.

    Parameters
    ----------
    score : {"el2n", "forgetting", "margin"} or "column:<name>", default="el2n"
        Difficulty source (higher = harder); see :mod:`dataselect.selectors.difficulty`.
    score_params : mapping or None, default=None
        Parameters of the scorer (e.g. ``{"hidden": 128, "n_runs": 5}`` for EL2N).
    beta : float, default=0.1
        Hard-pruning fraction in [0, 1) (the paper tunes it per data set and
        pruning rate; 0.1 is a middle value of its grid).
    n_strata : int, default=50
        ``k`` (the paper's 50).

    Notes
    -----
    The budget is always filled: the allocation sums to ``min(budget,
    rows left)`` (the floor sends remainders to later, larger strata), and
    pruning is reduced to ``n - budget`` rows when ``floor(beta * n)`` would
    leave fewer than ``budget``. Stratum ``j`` holds scores in
    ``[lo + j w, lo + (j + 1) w)``, ``w = (hi - lo) / k`` over the kept rows,
    the maximum in the last stratum (all rows in one stratum when the scores
    are constant). Equal sizes are visited lower stratum first; ties at the
    pruning cut are broken by a seeded random order (forgetting counts tie
    often). Output is grouped by stratum, easy to hard; ``scores`` hold each
    pick's difficulty; ``info`` the strata sizes and the allocation.

    References
    ----------
    .. [1] H. Zheng, R. Liu, F. Lai, A. Prakash, "Coverage-centric Coreset
       Selection for High Pruning Rates", ICLR 2023.
    """

    requires: ClassVar[tuple[str, ...]] = ()
    beta: float = 0.1
    n_strata: int = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        check(owner, "beta", self.beta, is_real(self.beta) and 0 <= self.beta < 1,
              "a number in [0, 1)")
        check(owner, "n_strata", self.n_strata, is_int(self.n_strata) and self.n_strata >= 1,
              "an int >= 1")

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        d, info = self.difficulty(features, n, rng)
        kept, pruned = prune_hardest(d, float(self.beta), budget, rng)
        strata, edges = ccs_strata(d[kept], self.n_strata)
        sizes = np.bincount(strata, minlength=self.n_strata)
        alloc = ccs_allocation(sizes, budget)
        picks = [rng.choice(kept[strata == j], size=alloc[j], replace=False)
                 for j in np.flatnonzero(alloc)]
        idx = np.concatenate(picks)
        return Selection(idx, d[idx], {**info, **pruned, "beta": float(self.beta),
                                       "score_range": [float(edges[0]), float(edges[-1])],
                                       "strata_sizes": sizes.tolist(),
                                       "allocation": alloc.tolist()})


def ccs_strata(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-width stratum (0..k-1) of each value and the k + 1 edges (see :class:`CCS`)."""
    lo, hi = float(values.min()), float(values.max())
    edges = np.linspace(lo, hi, k + 1)
    if hi == lo:
        return np.zeros(len(values), dtype=np.int64), edges
    j = np.floor((values - lo) / (hi - lo) * k).astype(np.int64)
    return np.minimum(j, k - 1), edges


def ccs_allocation(sizes: np.ndarray, budget: int) -> np.ndarray:
    """Rows per stratum: fewest rows first, ``min(|B|, floor(m / r))`` each.

    Sums to ``min(budget, sizes.sum())``: a stratum at least as large as the
    even share takes the floor, every later one is at least as large, so the
    remainder is absorbed (the last stratum takes ``m`` itself).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    alloc = np.zeros_like(sizes)
    m, r = int(budget), len(sizes)
    for j in np.argsort(sizes, kind="stable"):
        alloc[j] = min(int(sizes[j]), m // r)
        m -= int(alloc[j])
        r -= 1
    return alloc


@register("d2")
@dataclass(frozen=True)
class D2(DifficultyScored):
    """D2 pruning: message passing on a k-NN graph of difficulty [1]_.

    Rows are nodes of the k-NN graph of ``embedding``; node ``i`` starts
    with its difficulty ``s_i`` (non-negative). One round of *forward*
    message passing gathers the difficulty of the neighbourhood,

    .. math:: s_i \\leftarrow s_i + \\sum_{j \\in N(i)} e^{-\\gamma_f d(i, j)} s_j ,

    so a hard row in a hard region outranks an isolated one. Selection is
    greedy: take ``i = argmax s`` among the rows not taken, then *reverse*
    message passing lowers its neighbours,

    .. math:: s_j \\leftarrow s_j - e^{-\\gamma_r d(i, j)} s_i \\quad \\forall j \\in N(i),

    so the next picks come from elsewhere: difficulty and diversity at once.

    Parameters
    ----------
    score : {"el2n", "forgetting", "margin"} or "column:<name>", default="el2n"
        Difficulty (see :mod:`dataselect.selectors.difficulty`); a column
        must be non-negative.
    score_params : mapping or None, default=None
    n_neighbors : int, default=10
        ``k`` of the graph.
    gamma_f, gamma_r : float, default=1.0, 0.1
        Kernel widths of the forward and reverse passes (``>= 0``).
    beta : float, default=0.0
        Fraction of hardest rows dropped before the graph is built, as CCS
        does (the authors' recipes prune e.g. 40 % by forgetting on CIFAR).
    metric : {"euclidean", "cosine"}, default="euclidean"
        ``d(i, j)`` is the Euclidean distance of the rows (L2-normalised
        first for ``cosine``).

    Notes
    -----
    As in the authors' code, ``N(i)`` is symmetric: ``j`` is a neighbour of
    ``i`` when either is among the other's ``k`` nearest rows (FAISS exact
    search, :func:`~dataselect.selectors.neighbours.knn_table`). Defaults:
    ``k = 10``; ``gamma_f = 1`` (fixed in the authors' code); ``gamma_r =
    0.1`` (their released CIFAR recipe); the paper tunes ``k`` and
    ``gamma_r`` per data set. The greedy loop is an argmax over an n-vector
    per pick plus an update of the pick's neighbours: O(budget x n + edges),
    memory O(n k). Ties go to the lower row. ``scores`` hold each pick's
    message-passed score at pick time, in pick order. The seed only enters
    through the difficulty and the pruning ties: a column score with
    ``beta = 0`` is seed-free.

    References
    ----------
    .. [1] A. Maharana, P. Yadav, M. Bansal, "D2 Pruning: Message Passing
       for Balancing Diversity and Difficulty in Data Pruning", ICLR 2024.
    """

    requires: ClassVar[tuple[str, ...]] = ("embedding",)
    n_neighbors: int = 10
    gamma_f: float = 1.0
    gamma_r: float = 0.1
    beta: float = 0.0
    metric: str = "euclidean"

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        check(owner, "n_neighbors", self.n_neighbors,
              is_int(self.n_neighbors) and self.n_neighbors >= 1, "an int >= 1")
        for name in ("gamma_f", "gamma_r"):
            value = getattr(self, name)
            check(owner, name, value, is_real(value) and value >= 0, "a number >= 0")
        check(owner, "beta", self.beta, is_real(self.beta) and 0 <= self.beta < 1,
              "a number in [0, 1)")
        check_metric(owner, self.metric)

    @property
    def seeded(self) -> bool:  # type: ignore[override]
        return self.column is None or self.beta > 0

    @property
    def prefix_consistent(self) -> bool:  # type: ignore[override]
        """Greedy picks on a budget-free graph; ``beta > 0`` prunes ``min(beta n, n - budget)``."""
        return self.beta == 0

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        owner = type(self).__name__
        d, info = self.difficulty(features, n, rng)
        if (bad := np.flatnonzero(d < 0)).size:
            raise DataError(f"{owner} needs non-negative difficulty; features[{self.column!r}] "
                            f"has {bad.size} negative value(s), first at row {bad[0]}")
        kept, pruned = prune_hardest(d, float(self.beta), budget, rng)
        x = metric_rows(owner, features["embedding"], self.metric)
        nbr, dist = knn_table(x if len(kept) == n else x[kept], self.n_neighbors)
        picks, scores, n_edges = d2_greedy(nbr, dist, d[kept], budget,
                                           float(self.gamma_f), float(self.gamma_r))
        return Selection(kept[picks], scores, {
            **info, **pruned, "n_neighbors": int(self.n_neighbors), "gamma_f": float(self.gamma_f),
            "gamma_r": float(self.gamma_r), "n_edges": int(n_edges)})


def d2_greedy(
    nbr: np.ndarray, dist: np.ndarray, s: np.ndarray, budget: int, gamma_f: float, gamma_r: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Forward pass, then greedy picks with reverse passes; inputs are trusted.

    Parameters
    ----------
    nbr, dist : ndarray, shape (n, k)
        k-NN table (:func:`~dataselect.selectors.neighbours.knn_table`); the
        graph is its symmetric closure.
    s : ndarray of float64, shape (n,)
        Node difficulty.

    Returns
    -------
    picks : ndarray of int64, shape (budget,)
    scores : ndarray of float64, shape (budget,)
        Each pick's score when it was taken.
    n_edges : int
        Undirected edges of the graph.
    """
    n, k = nbr.shape
    src = np.repeat(np.arange(n), k)
    both_src = np.concatenate([src, nbr.ravel()])
    both_dst = np.concatenate([nbr.ravel(), src])
    both_d = np.concatenate([dist.ravel(), dist.ravel()])
    # i -> j listed by both rows: keep one copy of each directed pair.
    _, first = np.unique(both_src * n + both_dst, return_index=True)
    src, dst, w = both_src[first], both_dst[first], both_d[first]  # sorted by src, then dst
    ptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))])
    cur = s + np.bincount(src, weights=np.exp(-gamma_f * w) * s[dst], minlength=n)
    damp = np.exp(-gamma_r * w)
    picks, scores = np.empty(budget, dtype=np.int64), np.empty(budget)
    for t in range(budget):
        i = int(cur.argmax())
        picks[t], scores[t] = i, cur[i]
        lo, hi = ptr[i], ptr[i + 1]
        cur[dst[lo:hi]] -= damp[lo:hi] * cur[i]
        cur[i] = -math.inf
    return picks, scores, len(src) // 2
