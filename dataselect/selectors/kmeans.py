"""Cluster-stratified selection: FAISS k-means, budget split by cluster size."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import faiss
import numpy as np

from dataselect.selectors.base import (
    InvalidParameterError,
    Selection,
    Selector,
    check,
    is_int,
    largest_remainder,
)
from dataselect.selectors.registry import register

__all__ = ["KMeansSelector", "fit_kmeans"]


@register("kmeans")
@dataclass(frozen=True)
class KMeansSelector(Selector):
    """Cluster the embeddings, then sample every cluster in proportion to its size.

    Stratifying on k-means clusters keeps rare regions of the embedding space
    in a small subset with the right weight, the clustering-based selection
    used e.g. by SemDeDup [2]_ and prototypicality pruning [3]_.

    Parameters
    ----------
    n_clusters : int, default=100
        k for k-means on ``features["embedding"]`` (n, d); ``1 <= k <= n``.
    within : {"random", "centroid"}, default="random"
        Rows taken inside a cluster: uniform without replacement, or the
        ones closest to the centroid (ties to the lower row).
    niter : int, default=20
        Lloyd iterations [1]_ (FAISS ``Kmeans``, k-means++ is not used:
        FAISS seeds with a random sample of rows).

    Notes
    -----
    Cluster ``j`` of size ``s_j`` gets ``floor(budget * s_j / n)`` rows plus
    one more for the largest remainders (ties to the lower cluster), so the
    shares are exact integers that sum to ``budget`` and never exceed
    ``s_j``. FAISS runs single-threaded on all rows with a seed drawn from
    the selection seed, so a seed gives the same clusters in any process.
    ``scores`` hold each pick's distance to its centroid; ``info`` holds the
    inertia (sum of squared distances), cluster sizes and the allocation.
    Output is grouped by cluster.

    References
    ----------
    .. [1] S. Lloyd, "Least squares quantization in PCM", IEEE Trans. Inf.
       Theory 28(2), 1982.
    .. [2] A. Abbas et al., "SemDeDup: Data-efficient learning at web-scale
       through semantic deduplication", arXiv:2303.09540, 2023.
    .. [3] B. Sorscher et al., "Beyond neural scaling laws: beating power law
       scaling via data pruning", NeurIPS 2022.
    """

    requires: ClassVar[tuple[str, ...]] = ("embedding",)
    n_clusters: int = 100
    within: str = "random"
    niter: int = 20

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check(owner, "n_clusters", self.n_clusters, is_int(self.n_clusters) and self.n_clusters >= 1,
              "an int >= 1")
        check(owner, "within", self.within, self.within in ("random", "centroid"),
              "'random' or 'centroid'")
        check(owner, "niter", self.niter, is_int(self.niter) and self.niter >= 1, "an int >= 1")

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        if self.n_clusters > n:
            raise InvalidParameterError(
                f"{type(self).__name__}.n_clusters must be <= n={n} rows; got {self.n_clusters}"
            )
        x = features["embedding"]
        _, assign, d2 = fit_kmeans(x, self.n_clusters, self.niter, int(rng.integers(2**31 - 1)))
        sizes = np.bincount(assign, minlength=self.n_clusters)
        shares = largest_remainder(sizes, budget)
        # Rows grouped by cluster, nearest-to-centroid first within each.
        order = np.lexsort((np.arange(n), d2, assign))
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        picks = []
        for j in np.flatnonzero(shares):
            members = order[bounds[j] : bounds[j + 1]]
            if self.within == "centroid":
                picks.append(members[: shares[j]])
            else:
                picks.append(rng.choice(members, size=shares[j], replace=False))
        idx = np.concatenate(picks)
        return Selection(
            idx,
            np.sqrt(d2[idx]),
            {
                "inertia": float(d2.sum()),
                "n_clusters": int(self.n_clusters),
                "cluster_sizes": sizes.tolist(),
                "allocation": shares.tolist(),
            },
        )


def fit_kmeans(
    x: np.ndarray, n_clusters: int, niter: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FAISS k-means on all rows, single-threaded; inputs are trusted.

    Returns
    -------
    centroids : ndarray of float32, shape (n_clusters, d)
    assign : ndarray of int64, shape (n,)
        Nearest centroid of each row.
    d2 : ndarray of float64, shape (n,)
        Squared distance of each row to its centroid.
    """
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x32.shape
    km = faiss.Kmeans(
        d,
        n_clusters,
        niter=niter,
        seed=seed,
        verbose=False,
        # Use every row (FAISS would subsample above 256 per centroid) and
        # skip its "too few points" warning: small classes are legitimate.
        max_points_per_centroid=-(-n // n_clusters) + 1,
        min_points_per_centroid=1,
    )
    with _single_thread():
        km.train(x32)
        d2, assign = km.index.search(x32, 1)
    return km.centroids.copy(), assign[:, 0].astype(np.int64), np.maximum(d2[:, 0], 0).astype(
        np.float64
    )


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    # OpenMP reductions in FAISS training may sum in thread-dependent order;
    # one thread makes the centroids bit-identical across machines.
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
