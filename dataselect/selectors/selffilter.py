"""Self-filtering: keep the rows a cross-fitted head finds consistent with their label."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dataselect.selectors.base import Selection, Selector
from dataselect.selectors.crossfit import check_head_params, crossfit_proba, encode_labels
from dataselect.selectors.registry import register
from dataselect.selectors.uncertainty import check_keep, keep_by_score

__all__ = ["SelfFilter"]


@register("self_filter")
@dataclass(frozen=True)
class SelfFilter(Selector):
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
    preferred; see :func:`~dataselect.selectors.uncertainty.keep_by_score`).
    The folds depend on the seed.

    References
    ----------
    .. [1] S. Swayamdipta et al., "Dataset Cartography: Mapping and
       Diagnosing Datasets with Training Dynamics", EMNLP 2020.
    .. [2] C. G. Northcutt, L. Jiang, I. L. Chuang, "Confident Learning:
       Estimating Uncertainty in Dataset Labels", JAIR 70, 2021.
    """

    requires: ClassVar[tuple[str, ...]] = ("embedding", "label")
    keep: str = "high"
    q_low: float = 0.0
    q_high: float = 1.0
    n_folds: int = 5
    C: float = 1.0  # noqa: N815 - scikit-learn's name

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_keep(owner, self.keep, self.q_low, self.q_high)
        check_head_params(owner, self.n_folds, self.C)

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        owner = type(self).__name__
        classes, y = encode_labels(owner, features["label"], self.n_folds)
        fold_seed = int(rng.integers(2**31 - 1))
        proba, _ = crossfit_proba(features["embedding"], y, n_folds=self.n_folds, seed=fold_seed,
                                  C=self.C, n_classes=len(classes))
        confidence = proba[np.arange(n), y]
        sel = keep_by_score(owner, confidence, budget, rng, self.keep, self.q_low, self.q_high)
        return Selection(sel.indices, sel.scores,
                         {**sel.info, "mean_confidence": float(confidence.mean()),
                          "oof_accuracy": float((proba.argmax(1) == y).mean())})
