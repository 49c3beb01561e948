"""``probcover``: greedy maximum coverage by δ-balls (Yehuda et al., NeurIPS 2022)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dataselect.selectors.base import Selection, Selector, check, is_int, is_real
from dataselect.selectors.kmeans import kmeans_assign
from dataselect.selectors.neighbours import check_metric, knn_table, metric_rows
from dataselect.selectors.registry import register

__all__ = ["ProbCover", "ball_purity_radius", "greedy_cover"]


@register("probcover")
@dataclass(frozen=True)
class ProbCover(Selector):
    """ProbCover: greedy maximum coverage by balls of radius delta [1]_.

    Row ``x`` *covers* row ``y`` when ``||x - y|| < delta`` (every row covers
    itself). Greedy max coverage picks, ``budget`` times, the row covering the
    most rows not yet covered, a ``(1 - 1/e)``-approximation of the best
    coverage [2]_; at low budgets coverage bounds the error of a 1-NN
    classifier on the chosen rows [1]_.

    Parameters
    ----------
    alpha : float, default=0.95
        Purity target of the delta rule (see Notes); in (0, 1].
    n_clusters : int or None, default=None
        k of the k-means that defines purity; None: the number of distinct
        values of ``features["label"]`` (the paper's "number of classes";
        then ``label`` is read). Pass it explicitly under ``per_class``.
    delta : float or None, default=None
        Ball radius; None: chosen by the delta rule. An explicit value skips
        k-means (``purity`` is then None).
    max_degree : int, default=64
        Rows listed per ball, the row itself included (a FAISS k-NN table
        with ``max_degree - 1`` neighbours stands in for a range search; see
        Notes).
    metric : {"euclidean", "cosine"}, default="euclidean"
        ``cosine``: rows are L2-normalised first, ``delta`` is then in units
        of ``sqrt(2 - 2 cos)``.
    niter : int, default=20
        Lloyd iterations of the purity k-means (k-means|| start).

    Notes
    -----
    Delta rule [1]_: a ball ``B(x, delta)`` is *pure* when every row in it
    has ``x``'s k-means cluster; ``purity(delta)`` is the fraction of rows
    whose ball is pure, non-increasing in delta; delta is the largest value
    with ``purity(delta) >= alpha``. Row ``i``'s ball is pure exactly for
    ``delta <= r_i``, ``r_i`` its distance to the nearest row of another
    cluster, so the rule has a closed form: delta is the
    ``ceil(alpha * n)``-th largest ``r_i``. This is the paper's grid search
    with the complete grid (the ``r_i`` are the only values where purity
    changes), so no grid resolution is involved.

    Cap. Balls are read from each row's ``max_degree - 1`` nearest
    neighbours. When the list ends before ``delta`` the ball may hold
    unlisted rows; such a row counts as *impure* (``r_i`` is capped at its
    last listed distance), so at the chosen delta at most ``1 - alpha`` of
    the balls are truncated (``info["capped_fraction"]``), and coverage
    counts only listed rows. With ``max_degree >= n`` everything is exact.
    If no ``r_i`` is finite (one cluster, untruncated balls) delta is set
    just above the largest distance: one ball covers everything.

    Greedy: ties go to the lower row. Once every row is covered, the rest of
    the budget is drawn uniformly without replacement from the rows not yet
    picked (seeded). ``scores`` hold each greedy pick's gain (rows newly
    covered; 0 for the random fill). ``info`` reports ``delta``, ``purity``
    (at delta), ``covered_fraction`` (after the greedy picks), the number of
    greedy and fill picks, ``capped_fraction`` and the mean ball size.

    References
    ----------
    .. [1] O. Yehuda, A. Dekel, G. Hacohen, D. Weinshall, "Active Learning
       Through a Covering Lens", NeurIPS 2022.
    .. [2] G. L. Nemhauser, L. A. Wolsey, M. L. Fisher, "An analysis of
       approximations for maximizing submodular set functions", Math.
       Programming 14, 1978.
    """

    requires: ClassVar[tuple[str, ...]] = ("embedding",)
    alpha: float = 0.95
    n_clusters: int | None = None
    delta: float | None = None
    max_degree: int = 64
    metric: str = "euclidean"
    niter: int = 20

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check(owner, "alpha", self.alpha, is_real(self.alpha) and 0 < self.alpha <= 1,
              "a number in (0, 1]")
        check(owner, "n_clusters", self.n_clusters,
              self.n_clusters is None or (is_int(self.n_clusters) and self.n_clusters >= 1),
              "None or an int >= 1")
        check(owner, "delta", self.delta,
              self.delta is None or (is_real(self.delta) and self.delta > 0), "None or a number > 0")
        check(owner, "max_degree", self.max_degree, is_int(self.max_degree) and self.max_degree >= 1,
              "an int >= 1")
        check_metric(owner, self.metric)
        check(owner, "niter", self.niter, is_int(self.niter) and self.niter >= 1, "an int >= 1")

    def required(self) -> tuple[str, ...]:
        label = self.delta is None and self.n_clusters is None
        return self.requires + (("label",) if label else ())

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        x = metric_rows(type(self).__name__, features["embedding"], self.metric)
        nbr, dist = knn_table(x, self.max_degree - 1)
        truncated = nbr.shape[1] < n - 1
        purity, k = None, None
        if self.delta is None:
            k = min(n, self.n_clusters or len(np.unique(features["label"])))
            assign = kmeans_assign(x, k, self.niter, rng)
            r = ball_purity_radius(nbr, dist, assign, truncated)
            delta = _largest_delta(r, self.alpha, dist)
            purity = float(np.mean(r >= delta))
        else:
            delta = float(self.delta)
        picks, gains, covered = greedy_cover(nbr, dist, delta, budget)
        n_greedy = len(picks)
        if n_greedy < budget:
            free = np.ones(n, dtype=bool)
            free[picks] = False
            fill = rng.choice(np.flatnonzero(free), size=budget - n_greedy, replace=False)
            picks = np.concatenate([picks, fill])
            gains = np.concatenate([gains, np.zeros(len(fill))])
        inside = dist < delta
        return Selection(picks, gains, {
            "delta": float(delta), "delta_source": "rule" if self.delta is None else "given",
            "purity": purity, "alpha": float(self.alpha), "n_clusters": k,
            "covered_fraction": float(covered.mean()), "n_greedy": int(n_greedy),
            "n_random_fill": int(budget - n_greedy),
            "capped_fraction": float(inside[:, -1].mean()) if truncated and inside.size else 0.0,
            "mean_ball_size": float(1 + inside.sum() / n), "max_degree": int(self.max_degree)})


def ball_purity_radius(
    nbr: np.ndarray, dist: np.ndarray, assign: np.ndarray, truncated: bool
) -> np.ndarray:
    """``r_i``: row i's ball is pure exactly for ``delta <= r_i`` (see :class:`ProbCover`).

    Distance to the nearest listed row of another cluster, capped at the last
    listed distance when the lists are ``truncated``; ``inf`` when neither binds.
    """
    other = assign[nbr] != assign[:, None]
    r = np.where(other, dist, np.inf).min(axis=1, initial=np.inf)
    if truncated and dist.shape[1]:
        r = np.minimum(r, dist[:, -1])
    return r


def _largest_delta(r: np.ndarray, alpha: float, dist: np.ndarray) -> float:
    # round(): alpha * n in floating point can land just above an integer.
    m = max(1, math.ceil(round(alpha * len(r), 9)))
    delta = float(np.sort(r)[::-1][m - 1])
    if math.isinf(delta):
        delta = float(np.nextafter(dist.max(), np.inf)) if dist.size else 1.0
    return delta


def greedy_cover(
    nbr: np.ndarray, dist: np.ndarray, delta: float, budget: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy max coverage on the delta-graph of a neighbour table; inputs are trusted.

    Edges ``i -> i`` and ``i -> nbr[i, j]`` for ``dist[i, j] < delta``. Each
    step takes the row with the most uncovered out-neighbours (ties to the
    lower row) and removes every edge into the rows it covers, so degrees
    stay exact; total work O(edges) plus an argmax over n per pick. Stops
    after ``budget`` picks or when everything is covered.

    Returns
    -------
    picks : ndarray of int64
        At most ``budget`` rows, in pick order.
    gains : ndarray of float64
        Rows newly covered by each pick.
    covered : ndarray of bool, shape (n,)
    """
    n = len(nbr)
    inside = dist < delta
    src = np.concatenate([np.arange(n), np.nonzero(inside)[0]])
    dst = np.concatenate([np.arange(n), nbr[inside]])
    out_ptr, out_dst = _csr(src, dst, n)
    in_ptr, in_src = _csr(dst, src, n)
    deg = np.bincount(src, minlength=n)
    covered = np.zeros(n, dtype=bool)
    picks, gains = [], []
    for _ in range(budget):
        i = int(deg.argmax())
        if deg[i] == 0:
            break
        ys = out_dst[out_ptr[i] : out_ptr[i + 1]]
        new = ys[~covered[ys]]
        covered[new] = True
        np.subtract.at(deg, in_src[_gather(in_ptr, new)], 1)
        picks.append(i)
        gains.append(len(new))
    return np.asarray(picks, dtype=np.int64), np.asarray(gains, dtype=np.float64), covered


def _csr(key: np.ndarray, val: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(key, kind="stable")
    ptr = np.concatenate([[0], np.cumsum(np.bincount(key, minlength=n))])
    return ptr, val[order]


def _gather(ptr: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Positions ``ptr[v]:ptr[v + 1]`` for every ``v`` in ``nodes``, concatenated."""
    lens = ptr[nodes + 1] - ptr[nodes]
    starts = np.repeat(ptr[nodes] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    return starts + np.arange(lens.sum())
