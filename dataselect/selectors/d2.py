"""``d2``: D2 pruning, message passing on a k-NN graph (Maharana et al., ICLR 2024)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dataselect.core.errors import DataError
from dataselect.selectors.base import InvalidParameterError, Selection, check, is_int, is_real
from dataselect.selectors.difficulty import DifficultyScored, RowDifficulty
from dataselect.selectors.neighbours import check_metric, knn_table, metric_rows
from dataselect.selectors.registry import register

__all__ = ["D2", "d2_greedy"]


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
    score : {"el2n", "forgetting", "margin"} or "column:<name>", default="forgetting"
        Difficulty passed on the graph (see :mod:`dataselect.selectors.difficulty`);
        a column must be non-negative.
    score_params : mapping or None, default=None
    prune_score : {"el2n", "forgetting", "margin"}, "column:<name>" or None, default="margin"
        What ranks rows for the pruning step (None: ``score``); the authors
        prune by the area under the margin (AUM), of which ``margin`` is the
        out-of-fold analogue.
    prune_score_params : mapping or None, default=None
    n_neighbors : int, default=5
        ``k`` of the graph.
    gamma_f, gamma_r : float, default=1.0, 0.1
        Kernel widths of the forward and reverse passes (``>= 0``).
    beta : float, default=0.4
        Fraction of the pool pruned first, hardest by ``prune_score`` (likely
        mislabelled rows, which a small subset cannot afford), before the graph
        is built.
    metric : {"euclidean", "cosine"}, default="euclidean"
        ``d(i, j)`` is the Euclidean distance of the rows (L2-normalised
        first for ``cosine``).

    Notes
    -----
    Defaults follow the authors' released recipe at 90 % pruning (the
    CIFAR-10 command of adymaharana/d2pruning's README, the most pruned one
    it gives; this project's budgets prune 95-99 %): ``--coreset-key
    forgetting --mis-ratio 0.4`` (mis-key AUM) ``--n-neighbor 5 --gamma 0.1
    --graph-mode sum --graph-sampling-mode weighted --coreset-mode class
    --label-balanced``: forgetting scores on the graph, the 40 % lowest-AUM
    rows pruned first, ``k = 5``, ``gamma_f = 1`` (fixed in their code),
    ``gamma_r = 0.1``, and class-balanced budgets: ``d2`` runs
    ``per_class: balanced`` unless the config says otherwise (scores and
    pruning on the whole pool, one graph per class). The paper tunes ``k``,
    ``gamma_r`` and the mis-ratio per data set; ``beta: 0`` and
    ``per_class: none`` give the bare algorithm.

    As in the authors' code, ``N(i)`` is symmetric: ``j`` is a neighbour of
    ``i`` when either is among the other's ``k`` nearest rows (FAISS exact
    search, :func:`~dataselect.selectors.neighbours.knn_table`). The greedy
    loop is an argmax over an n-vector per pick plus an update of the pick's
    neighbours: O(budget x n + edges), memory O(n k). Ties go to the lower
    row. ``scores`` hold each pick's message-passed score at pick time, in
    pick order. The seed only enters through the scores and the pruning
    ties: column scores with ``beta = 0`` are seed-free.

    References
    ----------
    .. [1] A. Maharana, P. Yadav, M. Bansal, "D2 Pruning: Message Passing
       for Balancing Diversity and Difficulty in Data Pruning", ICLR 2024.
    """

    requires: ClassVar[tuple[str, ...]] = ("embedding",)
    default_per_class: ClassVar[str] = "balanced"
    score: str = "forgetting"
    prune_score: str | None = "margin"
    prune_score_params: Mapping[str, Any] | None = None
    n_neighbors: int = 5
    gamma_f: float = 1.0
    gamma_r: float = 0.1
    beta: float = 0.4
    metric: str = "euclidean"

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        pruner = None
        if self.prune_score is not None:
            try:
                pruner = RowDifficulty(score=self.prune_score, score_params=self.prune_score_params)
            except InvalidParameterError as err:
                raise InvalidParameterError(str(err).replace("RowDifficulty.", f"{owner}.prune_")) from err
        else:
            check(owner, "prune_score_params", self.prune_score_params, not self.prune_score_params,
                  "empty without a prune_score")
        object.__setattr__(self, "_pruner", pruner)
        check(owner, "n_neighbors", self.n_neighbors,
              is_int(self.n_neighbors) and self.n_neighbors >= 1, "an int >= 1")
        for name in ("gamma_f", "gamma_r"):
            value = getattr(self, name)
            check(owner, name, value, is_real(value) and value >= 0, "a number >= 0")
        check(owner, "beta", self.beta, is_real(self.beta) and 0 <= self.beta < 1,
              "a number in [0, 1)")
        check_metric(owner, self.metric)

    def pruning_scorer(self) -> DifficultyScored | None:
        return self._pruner  # type: ignore[attr-defined]

    def required(self) -> tuple[str, ...]:
        extra = self._pruner.required() if self._pruner is not None and self.beta > 0 else ()  # type: ignore[attr-defined]
        return tuple(dict.fromkeys(super().required() + extra))

    def params(self) -> dict[str, Any]:
        out = super().params()
        if self._pruner is not None:  # type: ignore[attr-defined]
            out["prune_score_params"] = self._pruner.params()["score_params"]  # type: ignore[attr-defined]
        return out

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
        d, kept, info = self.scored_rows(features, n, budget, rng)
        if (bad := np.flatnonzero(d < 0)).size:
            raise DataError(f"{owner} needs non-negative difficulty; features[{self.column!r}] "
                            f"has {bad.size} negative value(s), first at row {bad[0]}")
        x = metric_rows(owner, features["embedding"], self.metric)
        nbr, dist = knn_table(x if len(kept) == n else x[kept], self.n_neighbors)
        picks, scores, n_edges = d2_greedy(nbr, dist, d[kept], budget,
                                           float(self.gamma_f), float(self.gamma_r))
        return Selection(kept[picks], scores, {
            **info, "n_neighbors": int(self.n_neighbors), "gamma_f": float(self.gamma_f),
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
