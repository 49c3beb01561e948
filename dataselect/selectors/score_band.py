"""Score-and-keep selectors: predictive entropy and subword fertility.

Both compute one number per row and keep the rows with the highest values,
the lowest, or those inside a quantile band (:func:`keep_by_score`, shared
with ``self_filter``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dataselect.core.errors import InsufficientRowsError
from dataselect.selectors.base import Selection, Selector, check, is_real
from dataselect.selectors.crossfit import check_head_params, crossfit_proba, encode_labels

__all__ = ["CrossfitScore", "KEEP_MODES", "check_keep", "keep_by_score", "predictive_entropy"]

KEEP_MODES = ("high", "low", "band")


def check_keep(owner: str, keep: str, q_low: float, q_high: float) -> None:
    """Validate the ``keep`` / ``q_low`` / ``q_high`` trio."""
    check(owner, "keep", keep, keep in KEEP_MODES, f"one of {list(KEEP_MODES)}")
    check(owner, "q_low", q_low, is_real(q_low) and 0 <= q_low < 1, "a number in [0, 1)")
    check(owner, "q_high", q_high, is_real(q_high) and 0 < q_high <= 1, "a number in (0, 1]")
    check(owner, "q_high", q_high, q_high > q_low, f"greater than q_low={q_low!r}")


def keep_by_score(
    owner: str, value: np.ndarray, budget: int, rng: np.random.Generator,
    keep: str, q_low: float, q_high: float,
) -> Selection:
    """Choose ``budget`` rows by ``value`` (n,); inputs are trusted.

    ``high``: the largest values, in descending order (ties to the lower
    row); ``low``: the smallest, ascending; ``band``: uniformly at random
    among rows whose value lies in the ``[q_low, q_high]`` quantile band
    (both ends inclusive), an error when the band holds fewer than
    ``budget`` rows.

    ``scores`` follow the pipeline convention, higher = more preferred:
    ``value`` for ``high``, ``-value`` for ``low``, and for ``band`` minus the
    distance of the row's quantile rank from the band centre.
    """
    n = len(value)
    if keep == "high":
        picks = np.lexsort((np.arange(n), -value))[:budget]
        return Selection(picks, value[picks], {"keep": keep})
    if keep == "low":
        picks = np.lexsort((np.arange(n), value))[:budget]
        return Selection(picks, -value[picks], {"keep": keep})
    lo, hi = np.quantile(value, [q_low, q_high])
    band = np.flatnonzero((value >= lo) & (value <= hi))
    if len(band) < budget:
        raise InsufficientRowsError(
            f"{owner}: only {len(band)} of {n} rows lie in quantiles [q_low={q_low}, q_high={q_high}] "
            f"= [{lo:.4g}, {hi:.4g}], fewer than budget={budget}; widen the band or lower the budget"
        )
    picks = rng.choice(band, size=budget, replace=False)
    rank = (np.argsort(np.argsort(value, kind="stable"), kind="stable") + 0.5) / n
    return Selection(picks, -np.abs(rank[picks] - (q_low + q_high) / 2),
                     {"keep": keep, "value_low": float(lo), "value_high": float(hi),
                      "n_in_band": int(len(band))})


def predictive_entropy(proba: np.ndarray) -> np.ndarray:
    """``H(p) = -sum_k p_k log p_k`` per row of ``proba`` (n, K), in nats (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(proba > 0, proba * np.log(proba), 0.0)
    return -terms.sum(axis=1)


@dataclass(frozen=True)
class CrossfitScore(Selector):
    """Base of the selectors that score each row from cross-fitted head
    probabilities and keep by :func:`keep_by_score` (``entropy``,
    ``self_filter``); subclasses define :meth:`_score`."""

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

    @property
    def prefix_consistent(self) -> bool:  # type: ignore[override]
        """``high`` / ``low`` cut one seeded ranking at the budget; ``band`` draws at random."""
        return self.keep != "band"

    def _score(self, proba: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """Per-row value (n,) from out-of-fold ``proba`` (n, K), and info to report."""
        raise NotImplementedError

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        owner = type(self).__name__
        classes, y = encode_labels(owner, features["label"], self.n_folds)
        # Folds from the selector's generator: one seed fixes folds and band picks.
        fold_seed = int(rng.integers(2**31 - 1))
        proba, _ = crossfit_proba(features["embedding"], y, n_folds=self.n_folds, seed=fold_seed,
                                  C=self.C, n_classes=len(classes))
        value, info = self._score(proba, y)
        sel = keep_by_score(owner, value, budget, rng, self.keep, self.q_low, self.q_high)
        return Selection(sel.indices, sel.scores,
                         {**sel.info, **info, "oof_accuracy": float((proba.argmax(1) == y).mean())})

