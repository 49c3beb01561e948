"""Confident learning (``cleanlab``): drop likely label errors, then choose."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dataselect.core.errors import InsufficientRowsError
from dataselect.selectors.base import (
    STREAMS,
    Selection,
    Selector,
    check,
    is_int,
    load_features,
    stream_seed,
)
from dataselect.selectors.crossfit import check_head_params, crossfit_proba, encode_labels
from dataselect.selectors.registry import register

__all__ = ["ConfidentLearning"]

FILTER_BY = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
             "predicted_neq_given", "low_normalized_margin", "low_self_confidence")
QUALITY = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")


@register("cleanlab")
@dataclass(frozen=True)
class ConfidentLearning(Selector):
    """Drop rows ``cleanlab.filter.find_label_issues`` flags, fill the budget from the rest.

    Confident learning [1]_ estimates the joint distribution of given and
    true labels from out-of-sample predicted probabilities and prunes the
    rows most likely mislabelled. The probabilities come from a logistic
    regression head on ``embedding`` (n, d), cross-fitted over ``n_folds``
    folds (:func:`~dataselect.selectors.crossfit.crossfit_proba`): cleanlab
    requires ``pred_probs`` for rows the model was not trained on. Detection
    and ranking are cleanlab's own (``find_label_issues``,
    ``get_label_quality_scores``), not re-implemented here.

    Parameters
    ----------
    filter_by : str, default="prune_by_noise_rate"
        Passed to ``find_label_issues``; one of :data:`FILTER_BY`.
    fill : {"random", "quality"}, default="random"
        How to choose ``budget`` rows among the unflagged: uniformly at
        random, or the highest label-quality scores first (ties to the lower
        row).
    quality : str, default="self_confidence"
        ``method`` of ``cleanlab.rank.get_label_quality_scores``; one of
        :data:`QUALITY`.
    n_folds : int, default=5
    C : float, default=1.0
        Cross-fitting folds and inverse L2 strength of the head.

    Raises
    ------
    InsufficientRowsError
        At ``select`` time, when fewer than ``budget`` rows are unflagged.

    Notes
    -----
    ``scores`` hold each pick's label-quality score in [0, 1] (higher = more
    likely correctly labelled, i.e. more preferred). ``info`` reports the
    number flagged. The folds, hence the flags, depend on the seed.

    References
    ----------
    .. [1] C. G. Northcutt, L. Jiang, I. L. Chuang, "Confident Learning:
       Estimating Uncertainty in Dataset Labels", JAIR 70, 2021.
    """

    requires: ClassVar[tuple[str, ...]] = ("embedding", "label")
    filter_by: str = "prune_by_noise_rate"
    fill: str = "random"
    quality: str = "self_confidence"
    n_folds: int = 5
    C: float = 1.0  # noqa: N815 - scikit-learn's name

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check(owner, "filter_by", self.filter_by, self.filter_by in FILTER_BY, f"one of {list(FILTER_BY)}")
        check(owner, "fill", self.fill, self.fill in ("random", "quality"), "'random' or 'quality'")
        check(owner, "quality", self.quality, self.quality in QUALITY, f"one of {list(QUALITY)}")
        check_head_params(owner, self.n_folds, self.C)

    @property
    def prefix_consistent(self) -> bool:  # type: ignore[override]
        """``quality`` ranks one seeded set of unflagged rows; ``random`` draws from it."""
        return self.fill == "quality"

    def label_issues(self, features: Mapping[str, Any], seed: int, *, streams: str = "shared",
                     ) -> tuple[np.ndarray, np.ndarray]:
        """``(flagged, quality)``, both (n,): the flags and scores :meth:`select` uses with this seed
        (and ``streams``).

        ``flagged`` is cleanlab's boolean mask, ``quality`` its label-quality
        score per row (higher = more likely correct). For inspection and for
        composing pipelines that need every row's verdict.
        """
        owner = type(self).__name__
        arrays, _ = load_features(owner, features, self.required())
        check(owner, "seed", seed, is_int(seed) and seed >= 0, "a non-negative int")
        check(owner, "streams", streams, streams in STREAMS, f"one of {list(STREAMS)}")
        flagged, quality, _ = self._issues(arrays, np.random.default_rng(stream_seed(self.name, int(seed), streams)))
        return flagged, quality

    def _issues(
        self, features: dict[str, np.ndarray], rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, float]:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores

        classes, y = encode_labels(type(self).__name__, features["label"], self.n_folds)
        fold_seed = int(rng.integers(2**31 - 1))
        proba, _ = crossfit_proba(features["embedding"], y, n_folds=self.n_folds, seed=fold_seed,
                                  C=self.C, n_classes=len(classes))
        # n_jobs=1: cleanlab's multiprocessing pool is no use inside a Ray task.
        flagged = find_label_issues(y, proba, filter_by=self.filter_by, n_jobs=1)
        quality = get_label_quality_scores(y, proba, method=self.quality)
        return flagged, quality, float((proba.argmax(1) == y).mean())

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        owner = type(self).__name__
        flagged, quality, accuracy = self._issues(features, rng)
        clean = np.flatnonzero(~flagged)
        if len(clean) < budget:
            raise InsufficientRowsError(
                f"{owner}: only {len(clean)} of {n} rows are not flagged as label issues, "
                f"fewer than budget={budget}; lower the budget"
            )
        if self.fill == "random":
            picks = rng.choice(clean, size=budget, replace=False)
        else:
            picks = clean[np.lexsort((clean, -quality[clean]))[:budget]]
        return Selection(picks, quality[picks],
                         {"n_flagged": int(flagged.sum()), "filter_by": self.filter_by,
                          "oof_accuracy": accuracy})
