"""``forgetting``: forgetting events during training (Toneva et al., ICLR 2019)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dataselect.selectors.base import check
from dataselect.selectors.dynamics import (
    Params,
    predict_proba,
    torch_single_thread,
)
from dataselect.selectors.importance import HeadScores
from dataselect.selectors.memo import memoized
from dataselect.selectors.registry import register

__all__ = ["Forgetting", "ForgettingTracker", "count_forgetting"]


@register("forgetting")
@dataclass(frozen=True)
class Forgetting(HeadScores):
    """Forgetting events [1]_: how often a row goes from learned to forgotten.

    A forgetting event for row ``i`` is a step ``t`` where it was classified
    correctly at its previous observation and wrongly at this one
    (``acc_i^{t-1} > acc_i^t``). Rows forgotten often sit near the decision
    boundary or carry unusual / wrong labels; rows learned once and never
    forgotten ("unforgettable") can be dropped with little loss. As in the
    paper, a row that is *never* classified correctly counts as the most
    forgettable: its score is ``inf``. Highest scores are kept by default;
    ties (many rows share a count) are broken by a seeded random order, as
    the paper removes unforgettable rows at random.

    Parameters
    ----------
    mode : {"mini", "streaming"}, default="mini"
        ``mini``: after every epoch the whole pool is evaluated with the
        current head; the (epochs, n) correctness matrix is counted by
        :func:`count_forgetting`. ``streaming``: Toneva's presentation-time
        accounting in one pass over the training stream: each row's
        correctness is read from the forward pass of the minibatch that
        presents it, before the update, and folded into a
        :class:`ForgettingTracker` (last correctness, event count, learned
        flag per row: O(n) memory whatever ``epochs``).
    epochs : int, default=10
        Epochs of the head (observations per row); at least 2.
    hidden, batch_size, lr, keep
        As for :class:`EL2N`.

    References
    ----------
    .. [1] M. Toneva, A. Sordoni, R. Tachet des Combes, A. Trischler,
       Y. Bengio, G. J. Gordon, "An Empirical Study of Example Forgetting
       during Deep Neural Network Learning", ICLR 2019.
    """

    epochs: int = 10
    mode: str = "mini"

    _min_epochs: ClassVar[int] = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        check("Forgetting", "mode", self.mode, self.mode in ("mini", "streaming"),
              "'mini' or 'streaming'")

    def pool_scores(
        self, features: dict[str, np.ndarray], n: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        scores, events = self.row_scores(features, n, rng)
        tiebreak = rng.permutation(n)
        learned = np.isfinite(scores)
        return scores, tiebreak, {
            "mode": self.mode, "epochs": self.epochs, "never_learned": int((~learned).sum()),
            "unforgettable": int((learned & (events == 0)).sum())}

    def row_scores(
        self, features: dict[str, np.ndarray], n: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Forgetting score of every row (``inf``: never learned) and the raw
        event counts, both (n,) and read-only; draws the head seed from ``rng``.

        Also the difficulty behind ``ccs`` and ``d2`` (``score="forgetting"``).
        """
        seed = int(rng.integers(2**63 - 1))

        def compute() -> tuple[np.ndarray, np.ndarray]:
            x, y, k = self._prepare(features)
            with torch_single_thread():
                if self.mode == "mini":
                    acc = np.zeros((self.epochs, n), dtype=bool)

                    def snapshot(epoch: int, params: Params) -> None:
                        acc[epoch] = predict_proba(params, x).argmax(axis=1) == y

                    self._train(x, y, k, seed, on_epoch=snapshot)
                    events, learned = count_forgetting(acc)
                else:
                    tracker = ForgettingTracker(n)
                    self._train(x, y, k, seed,
                                on_batch=lambda _e, rows, correct, _p: tracker.update(rows, correct))
                    events, learned = tracker.events, tracker.learned
            return np.where(learned, events.astype(np.float64), np.inf), events

        return memoized("forgetting", (features["embedding"], features["label"]),
                        (seed, self.mode, self.hidden, self.epochs, self.batch_size, self.lr),
                        compute)


def count_forgetting(acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forgetting events from a correctness matrix.

    Parameters
    ----------
    acc : ndarray of bool, shape (T, n)
        ``acc[t, i]``: row ``i`` classified correctly at its observation ``t``.

    Returns
    -------
    events : ndarray of int64, shape (n,)
        Number of ``t`` with ``acc[t - 1, i] and not acc[t, i]``.
    learned : ndarray of bool, shape (n,)
        Whether row ``i`` was ever classified correctly.
    """
    acc = np.asarray(acc, dtype=bool)
    events = (acc[:-1] & ~acc[1:]).sum(axis=0).astype(np.int64)
    return events, acc.any(axis=0)


class ForgettingTracker:
    """Streaming forgetting counts: O(n) state updated one minibatch at a time.

    Feeding the observations of :func:`count_forgetting`'s matrix in time
    order gives the same ``events`` and ``learned``.
    """

    def __init__(self, n: int):
        self.last = np.zeros(n, dtype=bool)  # correct at the previous observation
        self.events = np.zeros(n, dtype=np.int64)
        self.learned = np.zeros(n, dtype=bool)

    def update(self, rows: np.ndarray, correct: np.ndarray) -> None:
        """Fold in one observation of each of ``rows`` (unique) with outcome ``correct``."""
        correct = np.asarray(correct, dtype=bool)
        self.events[rows] += self.last[rows] & ~correct
        self.last[rows] = correct
        self.learned[rows] |= correct
