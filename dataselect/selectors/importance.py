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
from torch.func import grad, vmap

from dataselect.errors import DataError
from dataselect.selectors.base import Selection, Selector, check, is_int, is_real
from dataselect.selectors.dynamics import (
    Params,
    encode_labels,
    head_logits,
    init_head,
    predict_proba,
    standardize,
    torch_single_thread,
    train_head,
)
from dataselect.selectors.memo import memoized
from dataselect.selectors.registry import register

__all__ = [
    "EL2N",
    "Forgetting",
    "ForgettingTracker",
    "GraNd",
    "count_forgetting",
    "el2n_scores",
    "grand_scores",
]

_KEEP = ("highest", "lowest")
# Rows per vmap chunk: per-sample gradients of the first layer are
# chunk x hidden x d floats (128 x 128 x 384 x 4 B = 25 MB). Measured on
# 8192 SST-2 rows, one thread: 1.7 s CPU at 32-128 rows, 3.5 s at 512-2048
# (fresh 100 MB+ buffers per chunk cost more than they save in calls).
_GRAD_CHUNK = 128


@dataclass(frozen=True)
class _HeadScores(Selector):
    """Shared head parameters, checks and the keep-top-k step."""

    requires: ClassVar[tuple[str, ...]] = ("embedding", "label")
    prefix_consistent: ClassVar[bool] = True  # one budget-free ranking, cut at the budget
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
        check(owner, "keep", self.keep, self.keep in _KEEP, "'highest' or 'lowest'")

    def _prepare(self, features: dict[str, np.ndarray]) -> tuple[torch.Tensor, np.ndarray, int]:
        y, k = encode_labels(features["label"])
        if k < 2:
            raise DataError(
                f"{type(self).__name__} trains a classifier and needs >= 2 classes in "
                f"features['label']; got {k} (per_class stratification runs it inside one class)"
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


@register("grand")
@dataclass(frozen=True)
class GraNd(_HeadScores):
    """GraNd: expected per-example gradient norm of the loss [1]_.

    ``score_i = mean_r || grad_theta CE(f_theta_r(x_i), y_i) ||_2`` over
    ``n_inits`` random initialisations ``theta_r`` of the head, at
    initialisation (``epochs=0``, the paper's "GraNd at init") or after
    ``epochs`` of training. The gradient norm bounds how much a row can
    change the loss of the others in one step, so large-score rows are the
    ones that drive early learning; keeping them prunes what the model would
    learn anyway.

    Parameters
    ----------
    hidden : int, default=128
        Width of the head's ReLU hidden layer; 0 gives a linear softmax head,
        whose GraNd at init is ``||softmax - onehot|| * sqrt(||x||^2 + 1)``,
        nearly a function of the row norm (use ``hidden > 0``).
    n_inits : int, default=5
        Initialisations averaged (the paper uses 10).
    epochs : int, default=0
        Adam epochs before the gradient is taken (0: at initialisation).
    batch_size, lr : int, float, default=256, 1e-3
        Training minibatch and Adam step, used only when ``epochs > 0``.
    keep : {"highest", "lowest"}, default="highest"

    Notes
    -----
    Per-sample gradients are computed in chunks of rows with
    ``torch.func.vmap(torch.func.grad(loss))``, one batched call per chunk,
    not a Python loop per row. Embeddings are standardised per dimension
    first. Only the head's parameters are differentiated: the paper's
    gradient over the whole network (or "optionally the last encoder
    layer") is left out, the encoder is frozen. Ties go to the lower row.

    References
    ----------
    .. [1] M. Paul, S. Ganguli, G. K. Dziugaite, "Deep Learning on a Data
       Diet: Finding Important Examples Early in Training", NeurIPS 2021.
    """

    epochs: int = 0
    n_inits: int = 5

    _min_epochs: ClassVar[int] = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check("GraNd", "n_inits", self.n_inits, is_int(self.n_inits) and self.n_inits >= 1,
              "an int >= 1")

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        seeds = rng.integers(0, 2**63 - 1, size=self.n_inits).tolist()

        def compute() -> np.ndarray:
            x, y, k = self._prepare(features)
            with torch_single_thread():
                heads = [init_head(x.shape[1], k, self.hidden, s) if self.epochs == 0
                         else self._train(x, y, k, s) for s in seeds]
                return grand_scores(heads, x, y)

        scores = memoized("grand", (features["embedding"], features["label"]),
                          (seeds, self.hidden, self.epochs, self.batch_size, self.lr), compute)
        return self._pick(scores, budget, np.arange(n),
                          {"n_inits": self.n_inits, "epochs": self.epochs})


def grand_scores(heads: list[Params], x: torch.Tensor, y: np.ndarray) -> np.ndarray:
    """Mean over ``heads`` of each row's loss-gradient norm, shape (n,), float64.

    Parameters
    ----------
    heads : list of dict of str to Tensor
        Head parameters (see :func:`~dataselect.selectors.dynamics.init_head`).
    x : Tensor of float32, shape (n, d)
    y : ndarray of int64, shape (n,)
    """

    def loss(params: Params, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(head_logits(params, xi[None]), yi[None])

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    total = np.zeros(len(x))
    for params in heads:
        for lo in range(0, len(x), _GRAD_CHUNK):
            g = per_sample(params, x[lo : lo + _GRAD_CHUNK], yt[lo : lo + _GRAD_CHUNK])
            sq = sum(v.reshape(v.shape[0], -1).pow(2).sum(dim=1) for v in g.values())
            total[lo : lo + _GRAD_CHUNK] += sq.sqrt().numpy()
    return total / len(heads)


@register("el2n")
@dataclass(frozen=True)
class EL2N(_HeadScores):
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

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        scores = self.row_scores(features, n, rng)
        return self._pick(scores, budget, np.arange(n),
                          {"n_runs": self.n_runs, "epochs": self.epochs})

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


@register("forgetting")
@dataclass(frozen=True)
class Forgetting(_HeadScores):
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

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        scores, events = self.row_scores(features, n, rng)
        tiebreak = rng.permutation(n)
        learned = np.isfinite(scores)
        return self._pick(scores, budget, tiebreak, {
            "mode": self.mode, "epochs": self.epochs, "never_learned": int((~learned).sum()),
            "unforgettable": int((learned & (events == 0)).sum())})

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
