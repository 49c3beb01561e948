"""``el2n``: error L2-norm early in training (Paul et al., NeurIPS 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dataselect.selectors.base import check, is_int
from dataselect.selectors.dynamics import (
    predict_proba,
    torch_single_thread,
)
from dataselect.selectors.importance import HeadScores
from dataselect.selectors.memo import memoized
from dataselect.selectors.registry import register

__all__ = ["EL2N", "el2n_scores"]


@register("el2n")
@dataclass(frozen=True)
class EL2N(HeadScores):
    """EL2N: error L2-norm early in training [1]_.

    ``score_i = mean_r || softmax(f_r(x_i)) - onehot(y_i) ||_2`` where ``f_r``
    is the head after ``epochs`` of Adam from seed ``r``, averaged over
    ``n_runs`` runs. Ranges from 0 (confidently right) to ``sqrt(2)``
    (confidently wrong): rows the model has not fitted after a few epochs
    are hard, rare or mislabelled; the paper keeps the highest.

    Parameters
    ----------
    hidden : int, default=128
        Head width (0: linear softmax).
    epochs : int, default=5
        Adam epochs before scoring ("a few"; the paper scores at ~10-20 %
        of full training).
    n_runs : int, default=5
        Independent runs averaged (the paper uses 10).
    batch_size, lr : int, float, default=256, 1e-3
    keep : {"highest", "lowest"}, default="highest"

    Notes
    -----
    The head trains on every row it scores (in-sample, as in the paper).
    Embeddings are standardised per dimension. Ties go to the lower row.

    References
    ----------
    .. [1] M. Paul, S. Ganguli, G. K. Dziugaite, "Deep Learning on a Data
       Diet: Finding Important Examples Early in Training", NeurIPS 2021.
    """

    n_runs: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        check("EL2N", "n_runs", self.n_runs, is_int(self.n_runs) and self.n_runs >= 1,
              "an int >= 1")

    def pool_scores(
        self, features: dict[str, np.ndarray], n: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        return self.row_scores(features, n, rng), np.arange(n), {"n_runs": self.n_runs, "epochs": self.epochs}

    def row_scores(
        self, features: dict[str, np.ndarray], n: int, rng: np.random.Generator
    ) -> np.ndarray:
        """EL2N of every row, shape (n,), read-only; draws the run seeds from ``rng``.

        Also the difficulty behind ``ccs`` and ``d2`` (``score="el2n"``).
        """
        seeds = rng.integers(0, 2**63 - 1, size=self.n_runs).tolist()

        def compute() -> np.ndarray:
            x, y, k = self._prepare(features)
            total = np.zeros(n)
            with torch_single_thread():
                for s in seeds:
                    total += el2n_scores(predict_proba(self._train(x, y, k, s), x), y)
            return total / self.n_runs

        # Budget- and keep-independent: el2n, el2n-easy, ccs and d2 at every fraction share it.
        return memoized("el2n", (features["embedding"], features["label"]),
                        (seeds, self.hidden, self.epochs, self.batch_size, self.lr), compute)


def el2n_scores(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``||probs_i - onehot(y_i)||_2`` per row; ``probs`` (n, k), ``y`` (n,) in ``0..k-1``."""
    err = np.array(probs, dtype=np.float64)
    err[np.arange(len(y)), y] -= 1.0
    return np.sqrt(np.einsum("ij,ij->i", err, err))
