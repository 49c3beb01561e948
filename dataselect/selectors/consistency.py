"""Prediction consistency under EDA perturbations: drop rows whose prediction flips."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dataselect.core.errors import DataError, InsufficientRowsError
from dataselect.selectors.base import Selection, Selector, check, is_int
from dataselect.selectors.crossfit import check_head_params, crossfit_proba, encode_labels
from dataselect.selectors.registry import register

__all__ = ["ConsistencyFilter"]


@register("consistency")
@dataclass(frozen=True)
class ConsistencyFilter(Selector):
    """Drop rows whose cross-fitted prediction flips on ``>= min_flips`` EDA variants.

    The feature family ``consistency`` (:mod:`dataselect.features.eda`)
    stores, per row, ``v`` EDA perturbations [1]_ (synonym replacement,
    random insertion, swap, deletion) embedded like the row itself:
    ``eda_embedding`` (n, v * d). Here a logistic-regression head is
    cross-fitted on the original ``embedding`` (n, d); the fold model that did
    not see row i predicts row i and its ``v`` variants. A row whose predicted
    class changes under small, meaning-preserving edits sits on a fragile
    part of the decision boundary or carries a label the text barely
    supports; dropping it keeps rows whose evidence is robust.

    Parameters
    ----------
    min_flips : int, default=2
        Drop a row when at least this many of its ``v`` variants get another
        predicted class than the original (checked against ``v`` at select time).
    fill : {"random", "stable"}, default="random"
        How to choose ``budget`` rows among those kept: uniformly at random,
        or the most stable first (fewest flips, then smallest mean
        probability shift; ties to the lower row).
    n_folds : int, default=5
    C : float, default=1.0
        Cross-fitting folds and inverse L2 strength of the head.

    Raises
    ------
    InsufficientRowsError
        At ``select`` time, when fewer than ``budget`` rows are kept.

    Notes
    -----
    ``scores`` hold each pick's stability, ``1 - mean_j TV(p_j, p_0)`` in
    [0, 1], with ``TV`` the total-variation distance between the predicted
    class distributions of variant j and of the original (higher = more
    preferred). The folds depend on the seed.

    References
    ----------
    .. [1] J. Wei, K. Zou, "EDA: Easy Data Augmentation Techniques for
       Boosting Performance on Text Classification Tasks", EMNLP 2019.
    """

    requires: ClassVar[tuple[str, ...]] = ("embedding", "label", "eda_embedding")
    min_flips: int = 2
    fill: str = "random"
    n_folds: int = 5
    C: float = 1.0  # noqa: N815 - scikit-learn's name

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check(owner, "min_flips", self.min_flips, is_int(self.min_flips) and self.min_flips >= 1,
              "an int >= 1")
        check(owner, "fill", self.fill, self.fill in ("random", "stable"), "'random' or 'stable'")
        check_head_params(owner, self.n_folds, self.C)

    @property
    def prefix_consistent(self) -> bool:  # type: ignore[override]
        return self.fill == "stable"

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        owner = type(self).__name__
        x = features["embedding"]
        d = x.shape[1]
        eda = features["eda_embedding"]
        if eda.ndim != 2 or eda.shape[1] % d:
            raise DataError(f"{owner}: features['eda_embedding'] must be (n, v * {d}) for embedding "
                            f"width {d}; got shape {eda.shape}")
        v = eda.shape[1] // d
        check(owner, "min_flips", self.min_flips, self.min_flips <= v,
              f"at most the {v} variants in features['eda_embedding']")
        classes, y = encode_labels(owner, features["label"], self.n_folds)
        fold_seed = int(rng.integers(2**31 - 1))
        proba, var_proba = crossfit_proba(x, y, n_folds=self.n_folds, seed=fold_seed, C=self.C,
                                          n_classes=len(classes), also=eda.reshape(n, v, d))
        flips = (var_proba.argmax(-1)  # type: ignore[union-attr]
                  != proba.argmax(-1)[:, None]).sum(1)
        stability = 1 - 0.5 * np.abs(var_proba - proba[:, None, :]).sum(-1).mean(1)
        kept = np.flatnonzero(flips < self.min_flips)
        if len(kept) < budget:
            raise InsufficientRowsError(
                f"{owner}: only {len(kept)} of {n} rows flip on fewer than min_flips={self.min_flips} "
                f"of {v} variants, fewer than budget={budget}; raise min_flips or lower the budget"
            )
        if self.fill == "random":
            picks = rng.choice(kept, size=budget, replace=False)
        else:
            picks = kept[np.lexsort((kept, -stability[kept], flips[kept]))[:budget]]
        return Selection(picks, stability[picks],
                         {"n_dropped": int(n - len(kept)), "n_variants": int(v),
                          "flip_histogram": np.bincount(flips, minlength=v + 1).tolist(),
                          "oof_accuracy": float((proba.argmax(1) == y).mean())})
