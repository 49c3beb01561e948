"""Feature herding: a subset whose embedding mean tracks the full-data mean."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dataselect.selectors.base import Selection, Selector
from dataselect.selectors.registry import register

__all__ = ["Herding", "herding"]


@register("herding")
@dataclass(frozen=True)
class Herding(Selector):
    """Greedy herding on embeddings (linear kernel).

    Step ``t + 1`` takes the unchosen row ``x`` that brings the running mean
    closest to the mean of all rows,

    ``argmin_x || (s_t + x) / (t + 1) - mu ||^2``,  ``s_t`` = sum of the first t picks,

    which is kernel herding [2]_ with the linear kernel, i.e. herding the
    embedding moments [1]_; the gap shrinks as O(1/t) rather than the
    O(1/sqrt(t)) of random sampling, so small subsets keep the data's centre.

    Notes
    -----
    Expanding the square, the ``x``-dependent part is
    ``||x||^2 + 2 x . (s_t - (t + 1) mu)``, so a step is one matrix-vector
    product with the (n, d) embeddings: O(n d) time, O(n) extra memory, no
    n x n kernel matrix. Ties go to the lower row. ``scores`` hold the gap
    ``||mean(S) - mu||`` right after each pick; ``info["mean_gap"]`` is the
    final one. Nothing depends on the budget but where the loop stops, so
    the picks at a smaller budget are a prefix (``prefix_consistent``).

    References
    ----------
    .. [1] M. Welling, "Herding dynamical weights to learn", ICML 2009.
    .. [2] Y. Chen, M. Welling, A. Smola, "Super-samples from kernel
       herding", UAI 2010.
    """

    requires: ClassVar[tuple[str, ...]] = ("embedding",)
    seeded: ClassVar[bool] = False  # greedy and tie-broken by row: no randomness
    prefix_consistent: ClassVar[bool] = True

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        picks, gaps = herding(features["embedding"], budget)
        return Selection(picks, gaps, {"mean_gap": float(gaps[-1])})

    def _prefix_info(self, selection: Selection, budget: int) -> dict[str, Any]:
        return {**selection.info, "mean_gap": float(selection.scores[budget - 1])}  # type: ignore[index]


def herding(
    x: np.ndarray, budget: int, target: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy linear-kernel herding; inputs are trusted.

    Parameters
    ----------
    x : ndarray, shape (n, d)
        float32 or float64; the matrix-vector products run in that dtype
        (memory-bound, so float32 halves the time), the running sums in float64.
    budget : int
        Picks, ``1 <= budget <= n``.
    target : ndarray of float64, shape (d,), optional
        Mean to track instead of ``mean(x)``: a partition herds toward its
        share of the pool's mean (:mod:`~dataselect.selectors.partitioned`).

    Returns
    -------
    picks : ndarray of int64, shape (budget,)
    gaps : ndarray of float64, shape (budget,)
        ``||mean(x[picks[:t + 1]]) - target||`` after each pick.
    """
    n, _ = x.shape
    mu = x.mean(axis=0, dtype=np.float64) if target is None else np.asarray(target, dtype=np.float64)
    base = np.einsum("ij,ij->i", x, x, dtype=np.float64)  # ||x||^2, reused every step
    s = np.zeros_like(mu)
    picks = np.empty(budget, dtype=np.int64)
    gaps = np.empty(budget)
    for t in range(budget):
        v = (s - (t + 1) * mu).astype(x.dtype)
        obj = base + 2.0 * (x @ v)
        obj[picks[:t]] = np.inf  # without replacement
        i = int(obj.argmin())
        picks[t] = i
        s += x[i]
        gaps[t] = float(np.linalg.norm(s / (t + 1) - mu))
    return picks, gaps
