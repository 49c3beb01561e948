"""Self-filtering: keep the rows a cross-fitted head finds consistent with their label."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataselect.selectors.registry import register
from dataselect.selectors.score_band import CrossfitScore

__all__ = ["SelfFilter"]


@register("self_filter")
@dataclass(frozen=True)
class SelfFilter(CrossfitScore):
    """Rank rows by the out-of-fold probability of their own label.

    A logistic-regression head on ``embedding`` (n, d) is cross-fitted over
    ``n_folds`` folds; row i's *confidence* is ``p(y_i | x_i)`` from the head
    that never saw row i. Mislabelled rows get low confidence (the model
    agrees with the label of their neighbours, not with theirs), so the top
    of the ranking is the clean, easy core of the data. This is the
    "confidence" axis of Dataset Cartography [1]_, measured out-of-sample
    instead of over training epochs: a linear head on frozen embeddings has
    no informative training dynamics, and an in-sample head memorises the
    noise it should expose [2]_.

    Parameters
    ----------
    keep : {"high", "band", "low"}, default="high"
        ``high``: the ``budget`` most confident rows (drops likely label
        errors and keeps easy rows); ``band``: random among rows whose
        confidence lies in the ``[q_low, q_high]`` quantile band (e.g. 0.2-0.9:
        drop suspected noise *and* the easiest rows, as cartography's
        "ambiguous" region suggests); ``low``: least confident first (for
        inspection, not training).
    q_low, q_high : float, default=0.0, 1.0
        Band for ``keep="band"``.
    n_folds : int, default=5
    C : float, default=1.0
        Cross-fitting folds and inverse L2 strength of the head.

    Notes
    -----
    ``scores`` hold the confidence for ``keep="high"`` (higher = more
    preferred; see :func:`~dataselect.selectors.score_band.keep_by_score`).
    The folds depend on the seed.

    References
    ----------
    .. [1] S. Swayamdipta et al., "Dataset Cartography: Mapping and
       Diagnosing Datasets with Training Dynamics", EMNLP 2020.
    .. [2] C. G. Northcutt, L. Jiang, I. L. Chuang, "Confident Learning:
       Estimating Uncertainty in Dataset Labels", JAIR 70, 2021.
    """

    def _score(self, proba: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        confidence = proba[np.arange(len(y)), y]
        return confidence, {"mean_confidence": float(confidence.mean())}
