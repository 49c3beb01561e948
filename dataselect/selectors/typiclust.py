"""``typiclust``: the most typical row of each k-means cluster (Hacohen et al., ICML 2022)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dataselect.selectors.base import Selection, Selector, check, is_int
from dataselect.selectors.kmeans import kmeans_assign
from dataselect.selectors.neighbours import check_metric, knn_table, metric_rows
from dataselect.selectors.registry import register

__all__ = ["TypiClust", "most_typical", "typiclust_schedule"]


@register("typiclust")
@dataclass(frozen=True)
class TypiClust(Selector):
    """TypiClust: the most typical row of each k-means cluster [1]_.

    Rows are clustered into ``K = min(budget, max_clusters)`` k-means
    clusters; then, cluster by cluster, the row of highest *typicality*

    .. math:: \\mathrm{Typ}(x) = \\Big(\\frac{1}{k} \\sum_{x_i \\in
              k\\text{-NN}(x)} \\lVert x - x_i \\rVert_2\\Big)^{-1}

    is taken, the k nearest neighbours being searched among the not yet
    chosen rows of ``x``'s own cluster (Eq. 1 of [1]_), with
    ``k = min(n_neighbors, m // 2)`` for ``m`` such rows, as in the authors'
    code. Typical rows sit in dense regions: at a low budget they represent
    the data better than rare, hard rows [1]_.

    Parameters
    ----------
    max_clusters : int, default=500
        Cap on ``K`` (the authors' ``MAX_NUM_CLUSTERS``).
    n_neighbors : int, default=20
        ``k`` of the typicality (the paper's 20).
    min_cluster_size : int, default=5
        Clusters with fewer rows are used only once every larger cluster is
        exhausted (they hold outliers).
    metric : {"euclidean", "cosine"}, default="euclidean"
        ``cosine``: rows are L2-normalised first (k-means and distances).
    niter : int, default=20
        Lloyd iterations (FAISS, started from k-means|| seeding [2]_,
        :func:`~dataselect.selectors.kmeans.kmeans_parallel_init`).

    Notes
    -----
    Pick order. Each next pick comes from the cluster with the fewest picks
    so far, ties to the larger cluster (original size), then the lower
    cluster id; only clusters with at least ``min_cluster_size`` rows and an
    unpicked row take part. With ``budget <= K`` usable clusters this is
    "the most typical row of each of the ``budget`` largest clusters"; past
    that it goes round-robin, largest first, which is what the authors'
    code does across active-learning rounds (sort by picks so far, then by
    size). When every usable cluster is exhausted the small clusters follow
    under the same rule, so the budget is always filled. Within a cluster
    typicality is recomputed after every pick on the rows left; ties go to
    the lower row. ``scores`` hold each pick's typicality (``inf`` for an
    exact duplicate, 0 for the last row of a cluster, which has no
    neighbour). Differences from [1]_: FAISS k-means instead of
    scikit-learn's (Mini-Batch) KMeans; typicality uses Euclidean distance
    as the paper's Eq. 1 (the authors' code averages FAISS's squared
    distances); the authors drop clusters of size ``<= 5``, here
    ``< min_cluster_size`` are deferred.

    References
    ----------
    .. [1] G. Hacohen, A. Dekel, D. Weinshall, "Active Learning on a Budget:
       Opposite Strategies Suit High and Low Budgets", ICML 2022.
    .. [2] B. Bahmani, B. Moseley, A. Vattani, R. Kumar, S. Vassilvitskii,
       "Scalable K-Means++", VLDB 2012.
    """

    requires: ClassVar[tuple[str, ...]] = ("embedding",)
    max_clusters: int = 500
    n_neighbors: int = 20
    min_cluster_size: int = 5
    metric: str = "euclidean"
    niter: int = 20

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("max_clusters", "n_neighbors", "min_cluster_size", "niter"):
            value = getattr(self, name)
            check(owner, name, value, is_int(value) and value >= 1, "an int >= 1")
        check_metric(owner, self.metric)

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        x = metric_rows(type(self).__name__, features["embedding"], self.metric)
        k = min(budget, self.max_clusters, n)
        assign = kmeans_assign(x, k, self.niter, rng)
        sizes = np.bincount(assign, minlength=k)
        schedule = typiclust_schedule(sizes, budget, self.min_cluster_size)
        counts = np.bincount(schedule, minlength=k)
        members = np.argsort(assign, kind="stable")  # rows grouped by cluster, ascending
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        rows: dict[int, np.ndarray] = {}
        typ: dict[int, np.ndarray] = {}
        for c in np.flatnonzero(counts):
            mine = members[bounds[c] : bounds[c + 1]]
            local, typ[c] = most_typical(x[mine], int(counts[c]), self.n_neighbors)
            rows[c] = mine[local]
        seen = np.zeros(k, dtype=np.int64)
        picks, scores = np.empty(budget, dtype=np.int64), np.empty(budget)
        for t, c in enumerate(schedule):
            picks[t], scores[t] = rows[c][seen[c]], typ[c][seen[c]]
            seen[c] += 1
        usable = sizes >= self.min_cluster_size
        return Selection(picks, scores, {
            "n_clusters": int(k), "usable_clusters": int(usable.sum()),
            "rows_in_small_clusters": int(sizes[~usable].sum()),
            "clusters_picked": int((counts > 0).sum()), "max_picks_per_cluster": int(counts.max()),
            "cluster_sizes": sizes.tolist(), "allocation": counts.tolist()})


def typiclust_schedule(sizes: np.ndarray, budget: int, min_size: int) -> np.ndarray:
    """Cluster of each pick, in pick order (see :class:`TypiClust`, Notes).

    Round ``r`` visits, largest first (ties to the lower id), every cluster
    with more than ``r`` rows; usable clusters (``size >= min_size``) before
    small ones. Inputs are trusted (``budget <= sizes.sum()``).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    order = np.lexsort((np.arange(len(sizes)), -sizes))
    out: list[np.ndarray] = []
    left = int(budget)
    for group in (order[sizes[order] >= min_size], order[sizes[order] < min_size]):
        r = 0
        while left > 0:
            active = group[sizes[group] > r]
            if not active.size:
                break
            out.append(active[:left])
            left -= min(left, active.size)
            r += 1
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def most_typical(x: np.ndarray, picks: int, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """``picks`` rows of ``x`` (m, d), each the most typical of the rows left.

    Returns local row positions in pick order and their typicality. One
    neighbour table with ``n_neighbors + picks - 1`` columns serves every
    step: after ``t`` removals each row still lists ``n_neighbors`` live
    neighbours (or every live row).
    """
    m = len(x)
    nbr, dist = knn_table(x, n_neighbors + picks - 1, memo=False)
    removed = np.zeros(m, dtype=bool)
    out, typ = np.empty(picks, dtype=np.int64), np.empty(picks)
    for t in range(picks):
        left = m - t
        if left == 1:
            out[t], typ[t] = int(np.flatnonzero(~removed)[0]), 0.0
        else:
            k = min(n_neighbors, left // 2)
            live = ~removed[nbr]
            use = live & (np.cumsum(live, axis=1) <= k)
            mean = np.where(use, dist, 0.0).sum(axis=1) / k
            mean[removed] = np.inf
            i = int(mean.argmin())
            with np.errstate(divide="ignore"):
                out[t], typ[t] = i, 1.0 / mean[i]
        removed[out[t]] = True
    return out, typ
