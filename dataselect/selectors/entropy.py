"""``entropy``: predictive entropy of a cross-fitted head: keep high, low or a band."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataselect.selectors.registry import register
from dataselect.selectors.score_band import (
    CrossfitScore,
    predictive_entropy,
)

__all__ = ["Entropy"]


@register("entropy")
@dataclass(frozen=True)
class Entropy(CrossfitScore):
    """Keep rows by the predictive entropy of a cross-fitted head (uncertainty).

    A logistic-regression head on ``embedding`` (n, d) is cross-fitted over
    ``n_folds`` folds (:func:`~dataselect.selectors.crossfit.crossfit_proba`);
    row i's entropy ``H = -sum_k p_ik log p_ik`` (nats) comes from the head
    that did not see it. High entropy marks rows near the decision boundary:
    the rows uncertainty sampling queries first [1]_ [2]_; low entropy marks
    easy, redundant rows.

    Parameters
    ----------
    keep : {"high", "low", "band"}, default="high"
        Largest entropies, smallest, or random within the quantile band.
    q_low, q_high : float, default=0.0, 1.0
        Quantile band for ``keep="band"`` (ignored otherwise).
    n_folds : int, default=5
    C : float, default=1.0
        Cross-fitting folds and inverse L2 strength of the head.

    Notes
    -----
    ``scores``: entropy for ``high``, minus entropy for ``low`` (higher =
    more preferred), see :func:`keep_by_score`. The folds depend on the seed.
    Entropy is symmetric in the classes, so the label only shapes the head.

    References
    ----------
    .. [1] D. D. Lewis, W. A. Gale, "A Sequential Algorithm for Training
       Text Classifiers", SIGIR 1994 (uncertainty sampling).
    .. [2] B. Settles, "Active Learning Literature Survey", Univ. of
       Wisconsin-Madison CS Tech. Report 1648, 2009, Sec. 3.1 (entropy).
    """

    def _score(self, proba: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        h = predictive_entropy(proba)
        return h, {"mean_entropy": float(h.mean())}
