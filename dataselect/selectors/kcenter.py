"""Greedy k-center (farthest-point) selection on embeddings."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dataselect.core.errors import DataError
from dataselect.selectors.base import InvalidParameterError, Selection, Selector, check, is_int
from dataselect.selectors.registry import register

__all__ = ["KCenterGreedy", "kcenter_greedy"]

# Floats per scratch block when all rows catch up at once (8 MB in float64).
_SCRATCH = 1 << 20
# Cost model for when to sync, in BLAS-3 multiply-add units. A single-row
# refresh is a memory-bound matrix-vector product plus Python overhead, and a
# sync also makes later refreshes cheaper; the weight was tuned on 67k x 384
# Gaussian rows (the worst case: no cluster structure), where 128 beat 8..512.
_GEMV_WEIGHT = 128
_CALL_COST = 50_000


@register("kcenter")
@dataclass(frozen=True)
class KCenterGreedy(Selector):
    """Greedy k-center (farthest-point) selection on embeddings.

    Each step picks the row farthest from every row picked so far, so the
    subset covers the embedding space: its covering radius is at most twice
    the optimal k-center radius [1]_; Sener & Savarese use it as a core-set
    for active learning [2]_.

    Parameters
    ----------
    metric : {"euclidean", "cosine"}, default="euclidean"
        Distance between rows of ``features["embedding"]`` (n, d). Cosine
        distance ``1 - cos`` is monotone in the Euclidean distance of
        L2-normalised rows, so it picks the same rows as Euclidean on
        normalised embeddings; scores and radius are reported in ``1 - cos``.
    initial : sequence of int or None, default=None
        Rows to start from, in order; they are the first picks and count
        toward the budget. ``None``: start from one row drawn with the seed.

    Notes
    -----
    Picks, scores and radius equal the textbook loop that updates an
    n-vector of distance-to-nearest-centre after every pick (ties to the
    lower row), up to float rounding: distances are computed in the
    embedding's dtype (float32 stays float32) via
    ``||a||^2 + ||b||^2 - 2 a.b``. Because those distances only shrink, each
    row keeps an upper bound in a max-heap and is brought up to date only
    when it reaches the top (lazy evaluation, as in lazy greedy [3]_); when
    that row-by-row work reaches the cost of one blocked GEMM pass over all
    rows, every row is brought up to date at once (ski-rental rule), so the
    worst case stays near the dense loop's multiply-adds at BLAS-3 speed.
    Memory is O(n) for the bounds plus the ``budget x d`` chosen rows and a
    fixed 8 MB scratch block; never an ``n x n`` or ``n x budget`` matrix.
    ``scores`` hold each pick's distance to the nearest earlier pick
    (``inf`` for the first); ``info["radius"]`` is the covering radius.

    For a given seed (or ``initial``) the picks at a smaller budget are the
    first picks at a larger one (``prefix_consistent``): the start and
    every step are the same, and the radius at budget ``b`` is the score of
    pick ``b + 1`` (the farthest row from the first ``b`` picks), computed
    by the same code path, so a slice is bit-identical to its own run.

    References
    ----------
    .. [1] T. Gonzalez, "Clustering to minimize the maximum intercluster
       distance", Theor. Comput. Sci. 38, 1985.
    .. [2] O. Sener, S. Savarese, "Active Learning for Convolutional Neural
       Networks: A Core-Set Approach", ICLR 2018.
    .. [3] M. Minoux, "Accelerated greedy algorithms for maximizing submodular
       set functions", Optimization Techniques, LNCIS 7, 1978.
    """

    requires: ClassVar[tuple[str, ...]] = ("embedding",)
    prefix_consistent: ClassVar[bool] = True
    metric: str = "euclidean"
    initial: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check(owner, "metric", self.metric, self.metric in ("euclidean", "cosine"),
              "'euclidean' or 'cosine'")
        if self.initial is not None:
            ok = isinstance(self.initial, list | tuple | np.ndarray) and all(
                is_int(i) and i >= 0 for i in self.initial
            )
            check(owner, "initial", self.initial, ok, "None or a sequence of row indices >= 0")
            check(owner, "initial", self.initial,
                  len(set(map(int, self.initial))) == len(self.initial), "free of duplicates")
            object.__setattr__(self, "initial", tuple(int(i) for i in self.initial))

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        owner = type(self).__name__
        start = list(self.initial or ())
        if start and max(start) >= n:
            raise InvalidParameterError(
                f"{owner}.initial must hold row indices < n={n}; got {max(start)}"
            )
        self._check_initial_fits(budget)
        x = features["embedding"]
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        if self.metric == "cosine":
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            if (zero := np.flatnonzero(norm[:, 0] == 0)).size:
                raise DataError(
                    f"{owner}: cosine metric needs non-zero embeddings; "
                    f"{zero.size} row(s) are zero, first at row {zero[0]}"
                )
            x = x / norm
        if not start:
            start = [int(rng.integers(n))]
        picks, scores, radius = kcenter_greedy(x, budget, start)
        if self.metric == "cosine":  # ||a - b||^2 = 2 - 2 cos for unit rows
            # x * x for both (not ** 2: libm pow vs numpy's square), so a
            # prefix's radius equals the next pick's score bit for bit.
            scores, radius = scores * scores / 2, radius * radius / 2
        return Selection(picks, scores, {"radius": float(radius), "metric": self.metric})

    def _check_initial_fits(self, budget: int) -> None:
        if self.initial is not None and len(self.initial) > budget:
            raise InvalidParameterError(
                f"{type(self).__name__}.initial must hold at most budget={budget} rows; "
                f"got {len(self.initial)}"
            )

    def truncate(self, selection: Selection, budget: int) -> Selection:
        self._check_initial_fits(budget)  # as a separate run at this budget would
        return super().truncate(selection, budget)

    def _prefix_info(self, selection: Selection, budget: int) -> dict[str, Any]:
        return {**selection.info, "radius": float(selection.scores[budget])}  # type: ignore[index]


def kcenter_greedy(
    x: np.ndarray, budget: int, start: list[int]
) -> tuple[np.ndarray, np.ndarray, float]:
    """Farthest-point greedy from ``start``; inputs are trusted.

    Parameters
    ----------
    x : ndarray of float32 or float64, shape (n, d)
        Distances are computed in this dtype.
    budget : int
        Total picks, ``len(start) <= budget <= n``.
    start : list of int
        Forced first picks, unique, non-empty.

    Returns
    -------
    picks : ndarray of int64, shape (budget,)
    scores : ndarray of float64, shape (budget,)
        Euclidean distance of each pick to the nearest earlier pick.
    radius : float
        Max over all rows of the distance to the nearest pick.
    """
    n, d = x.shape
    sq = np.einsum("ij,ij->i", x, x)
    centres = np.empty((budget, d), dtype=x.dtype)
    csq = np.empty(budget, dtype=x.dtype)
    ub = np.full(n, np.inf)  # distance to the nearest of the first done[i] centres
    done = np.zeros(n, dtype=np.int64)
    taken = np.zeros(n, dtype=bool)
    picks = np.empty(budget, dtype=np.int64)
    scores = np.empty(budget)
    heap: list[tuple[float, int]] = []
    k = synced = 0  # centres so far; centres every row has seen
    lazy_cost = 0.0  # work spent on single-row refreshes since the last sync

    def refresh(i: int) -> float:
        # Fold in the centres added since row i was last brought up to date.
        nonlocal lazy_cost
        lo = int(done[i])
        if lo < k:
            norms = csq[lo:k] + sq[i]
            d2 = centres[lo:k] @ x[i]  # matrix-vector: no BLAS-3 call overhead per row
            d2 *= -2
            d2 += norms
            j = int(d2.argmin())
            # Same snap as _nearest: duplicates of a centre sit at distance 0.
            near = 0.0 if d2[j] <= _snap(norms[j]) else float(np.sqrt(d2[j]))
            ub[i] = min(ub[i], near)
            done[i] = k
            lazy_cost += (k - lo) * d * _GEMV_WEIGHT + _CALL_COST
        return float(ub[i])

    def sync() -> None:
        # Bring every free row up to date with BLAS-3 blocks, then rebuild the
        # heap: cheaper than row-at-a-time refreshes once many tops go stale.
        nonlocal synced, lazy_cost, heap
        step = max(1, _SCRATCH // (k - synced))  # scratch stays step x (k - synced)
        for lo in range(0, n, step):  # contiguous views of x: no gathered copy
            rows = slice(lo, lo + step)
            new = _nearest(x[rows], sq[rows], centres[synced:k], csq[synced:k])
            np.minimum(ub[rows], new, out=ub[rows])
        done[:] = synced = k
        free = np.flatnonzero(~taken)
        lazy_cost = 0.0
        heap = list(zip((-ub[free]).tolist(), free.tolist(), strict=True))
        heapq.heapify(heap)

    def add(i: int, score: float) -> None:
        nonlocal k
        picks[k], scores[k] = i, score
        centres[k], csq[k] = x[i], sq[i]
        taken[i] = True
        k += 1

    def farthest() -> tuple[int, float]:
        # Pop stale tops until the top is up to date: its distance then
        # bounds every other row's, whose bounds only overestimate.
        while heap:
            neg, i = heap[0]
            if done[i] == k:
                return i, -neg
            heapq.heapreplace(heap, (-refresh(i), i))
        return -1, 0.0

    def next_farthest() -> tuple[int, float]:
        # Ski-rental rule: sync once lazy work matches what a sync would cost.
        if synced < k < n and lazy_cost >= (n - k) * (k - synced) * d:
            sync()
        return farthest()

    for i in start:
        add(i, refresh(i))
    sync()
    while k < budget:
        i, dist = next_farthest()
        heapq.heappop(heap)
        add(i, dist)
    # The radius is what the next pick's score would be, by the same steps,
    # so a run at budget b reports the score of pick b + 1 of a longer run.
    _, radius = next_farthest()
    return picks, scores, radius


def _nearest(a: np.ndarray, asq: np.ndarray, b: np.ndarray, bsq: np.ndarray) -> np.ndarray:
    """Distance from each row of ``a`` to its nearest row of ``b``, shape (len(a),)."""
    # ||a||^2 is constant along a row: add it after the argmin (fewer passes).
    d2 = a @ b.T
    d2 *= -2
    d2 += bsq[None, :]
    j = d2.argmin(axis=1)
    best = d2[np.arange(len(a)), j] + asq
    best[best <= _snap(asq + bsq[j])] = 0
    return np.sqrt(best, dtype=np.float64)


def _snap(norms: np.ndarray) -> np.ndarray:
    # ||a||^2 + ||b||^2 - 2 a.b leaves rounding of ~eps * (||a||^2 + ||b||^2)
    # where a == b; below that a squared distance counts as 0, as a direct
    # difference would give for duplicate rows.
    return norms * (8 * np.finfo(norms.dtype).eps)
