"""Exact nearest-neighbour tables (FAISS) and the metric step the graph selectors share.

``typiclust``, ``probcover`` and ``d2`` all read distances between rows of
``embedding``: :func:`metric_rows` turns the ``metric`` parameter into rows
whose Euclidean distances are the ones wanted, and :func:`knn_table` lists
each row's nearest other rows with exact float64 distances.
"""

from __future__ import annotations

import faiss
import numpy as np

from dataselect.core.errors import DataError
from dataselect.selectors.base import check
from dataselect.selectors.kmeans import _single_thread
from dataselect.selectors.memo import memoized

__all__ = ["METRICS", "check_metric", "knn_table", "metric_rows", "pair_distances"]

METRICS = ("euclidean", "cosine")
# Float64 scratch per block when recomputing pair distances (16 MB).
_SCRATCH = 1 << 21


def check_metric(owner: str, metric: str) -> None:
    """Validate a ``metric`` parameter."""
    check(owner, "metric", metric, metric in METRICS, "'euclidean' or 'cosine'")


def metric_rows(owner: str, x: np.ndarray, metric: str) -> np.ndarray:
    """Rows whose Euclidean distances realise ``metric``, float32 or float64.

    ``cosine`` L2-normalises every row, so ``||a - b|| = sqrt(2 - 2 cos(a, b))``
    (monotone in the cosine distance); ``euclidean`` returns ``x`` itself.

    Raises
    ------
    DataError
        ``cosine`` with an all-zero row (its direction is undefined).
    """
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if metric == "euclidean":
        return x
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    if (zero := np.flatnonzero(norm[:, 0] == 0)).size:
        raise DataError(f"{owner}: cosine metric needs non-zero embeddings; "
                        f"{zero.size} row(s) are zero, first at row {zero[0]}")
    return x / norm


def knn_table(x: np.ndarray, k: int, *, memo: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest other rows, exact; inputs are trusted.

    Parameters
    ----------
    x : ndarray of float, shape (n, d)
    k : int
        Neighbours per row, ``0 <= k``; capped at ``n - 1``.
    memo : bool, default=True
        Reuse the table for equal ``x`` and ``k`` within the process
        (:mod:`~dataselect.selectors.memo`): a grid asks for the same graph at
        every fraction. Off for the many small per-cluster tables.

    Returns
    -------
    nbr : ndarray of int64, shape (n, min(k, n - 1))
        Neighbour rows, nearest first (ties to the lower row); never the row itself.
    dist : ndarray of float64, same shape
        Euclidean distances ``||x_i - x_j||``.

    Notes
    -----
    FAISS ``IndexFlatL2`` (brute force, one thread, so the table is the same
    in any process) finds ``k + 1`` candidates per row in float32; the row
    itself is dropped (or the last candidate when duplicates pushed it off
    the list). The kept pairs' distances are then recomputed in float64 as
    ``sqrt(sum (x_i - x_j)^2)``, so they carry no ``|a|^2 + |b|^2 - 2ab``
    cancellation; only the choice of neighbours between rows at float32-equal
    distance can differ from an exact float64 search.
    """
    k = min(int(k), len(x) - 1)

    def compute() -> tuple[np.ndarray, np.ndarray]:
        return _knn(x, k)

    if not memo:
        return compute()
    return memoized("knn", (x,), (k,), compute)


def _knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(x)
    if k <= 0:
        return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0))
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    index = faiss.IndexFlatL2(x32.shape[1])
    with _single_thread():
        index.add(x32)
        _, cand = index.search(x32, k + 1)
    cand = cand.astype(np.int64)
    own = cand == np.arange(n)[:, None]
    keep = ~own
    keep[~own.any(axis=1), -1] = False  # self missing: drop the farthest candidate
    nbr = cand[keep].reshape(n, k)
    dist = pair_distances(x, nbr)
    order = _row_order(dist, nbr)
    return np.take_along_axis(nbr, order, axis=1), np.take_along_axis(dist, order, axis=1)


def _row_order(dist: np.ndarray, nbr: np.ndarray) -> np.ndarray:
    # Per row: ascending distance, ties to the lower neighbour row.
    n, k = dist.shape
    flat = np.lexsort((nbr.ravel(), dist.ravel(), np.repeat(np.arange(n), k)))
    return (flat % k).reshape(n, k)


def pair_distances(x: np.ndarray, nbr: np.ndarray) -> np.ndarray:
    """``||x_i - x_nbr[i, j]||`` in float64, shape of ``nbr``, in bounded blocks of rows."""
    n, k = nbr.shape
    out = np.empty((n, k))
    step = max(1, _SCRATCH // max(1, k * x.shape[1]))
    for lo in range(0, n, step):
        rows = slice(lo, lo + step)
        diff = x[nbr[rows]].astype(np.float64) - x[rows, None, :].astype(np.float64)
        out[rows] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    return out
