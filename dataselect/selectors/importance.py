"""Importance scores from a cheap head's training dynamics: GraNd, EL2N, forgetting.

Each selector scores every row with a small classifier head trained on the
cached embeddings (:mod:`dataselect.selectors.dynamics`; the encoder itself
is never fine-tuned, which the papers do with the full network), then keeps
the ``budget`` rows with the highest (default) or lowest scores. High scores
mark rows the model finds hard: informative early in training, but also
where mislabelled rows sit, so ``keep="lowest"`` is offered for small
budgets and noisy pools (Sorscher et al., NeurIPS 2022, find that the
easiest rows are the better subset when data is scarce).

``scores`` of a :class:`~dataselect.selectors.base.Selection` hold each
pick's importance score; ``info`` the score distribution over all rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from dataselect.core.errors import DataError
from dataselect.selectors.base import Selection, Selector, check, is_int, is_real
from dataselect.selectors.dynamics import (
    Params,
    encode_labels,
    standardize,
    train_head,
)

__all__ = ["GRAD_CHUNK", "HeadScores", "KEEP_ENDS", "POOL_SCORE", "POOL_TIEBREAK"]

POOL_SCORE, POOL_TIEBREAK = "_pool_score", "_pool_tiebreak"
"""Columns :meth:`HeadScores.prepare` adds: scores and tie-breaks learnt on the whole pool."""

KEEP_ENDS = ("highest", "lowest")
# Rows per vmap chunk: per-sample gradients of the first layer are
# chunk x hidden x d floats (128 x 128 x 384 x 4 B = 25 MB). Measured on
# 8192 SST-2 rows, one thread: 1.7 s CPU at 32-128 rows, 3.5 s at 512-2048
# (fresh 100 MB+ buffers per chunk cost more than they save in calls).
GRAD_CHUNK = 128


@dataclass(frozen=True)
class HeadScores(Selector):
    """Shared head parameters, checks and the keep-top-k step."""

    requires: ClassVar[tuple[str, ...]] = ("embedding", "label")
    prefix_consistent: ClassVar[bool] = True  # one budget-free ranking, cut at the budget
    scores_pool: ClassVar[bool] = True
    hidden: int = 128
    epochs: int = 5
    batch_size: int = 256
    lr: float = 1e-3
    keep: str = "highest"

    _min_epochs: ClassVar[int] = 1

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check(owner, "hidden", self.hidden, is_int(self.hidden) and self.hidden >= 0,
              "an int >= 0 (0: linear softmax head)")
        check(owner, "epochs", self.epochs, is_int(self.epochs) and self.epochs >= self._min_epochs,
              f"an int >= {self._min_epochs}")
        check(owner, "batch_size", self.batch_size, is_int(self.batch_size) and self.batch_size >= 1,
              "an int >= 1")
        check(owner, "lr", self.lr, is_real(self.lr) and self.lr > 0, "a number > 0")
        check(owner, "keep", self.keep, self.keep in KEEP_ENDS, "'highest' or 'lowest'")

    def pool_scores(self, features: dict[str, np.ndarray], n: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """(scores, tie-break order, info) of every row; the subclass's method."""
        raise NotImplementedError

    def prepare(self, features: dict[str, np.ndarray], n: int, budget: int,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
        scores, tiebreak, _ = self.pool_scores(features, n, rng)
        return {POOL_SCORE: scores, POOL_TIEBREAK: tiebreak}

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        if POOL_SCORE in features:  # inside one class of a PerClass run: scored on the pool
            return self._pick(features[POOL_SCORE], budget, features[POOL_TIEBREAK], {"scored_on": "pool"})
        scores, tiebreak, info = self.pool_scores(features, n, rng)
        return self._pick(scores, budget, tiebreak, info)

    def _prepare(self, features: dict[str, np.ndarray]) -> tuple[torch.Tensor, np.ndarray, int]:
        y, k = encode_labels(features["label"])
        if k < 2:
            raise DataError(
                f"{type(self).__name__} trains a classifier and needs >= 2 classes in "
                f"features['label']; got {k}"
            )
        return standardize(features["embedding"]), y, k

    def _train(self, x: torch.Tensor, y: np.ndarray, k: int, seed: int, **kw) -> Params:
        return train_head(x, y, k, hidden=self.hidden, epochs=self.epochs,
                          batch_size=self.batch_size, lr=self.lr, seed=seed, **kw)

    def _pick(self, scores: np.ndarray, budget: int, tiebreak: np.ndarray, info: dict) -> Selection:
        key = -scores if self.keep == "highest" else scores
        picks = np.lexsort((tiebreak, key))[:budget]
        finite = scores[np.isfinite(scores)]
        stats = {"score_mean": float(finite.mean()) if finite.size else None,
                 "score_max_finite": float(finite.max()) if finite.size else None,
                 "threshold": float(scores[picks[-1]]) if np.isfinite(scores[picks[-1]]) else None}
        return Selection(picks, scores[picks], {**info, **stats, "keep": self.keep})

    def _prefix_info(self, selection: Selection, budget: int) -> dict[str, Any]:
        last = float(selection.scores[budget - 1])  # type: ignore[index]
        return {**selection.info, "threshold": last if np.isfinite(last) else None}

