"""The probe trainer: a scikit-learn head on cached frozen embeddings.

The CPU proxy that lets a whole grid run in minutes; same result shape as
:func:`dataselect.train.trainer.finetune`.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dataselect.core.config import TrainerConfig
from dataselect.core.errors import DataError
from dataselect.train.board import Board
from dataselect.train.metrics import classification_metrics, subset_summary
from dataselect.train.trainer import add_validation, hparams_record, training_result

log = logging.getLogger(__name__)

__all__ = ["probe"]

CODE_VERSION = 1
"""Version of the probe's behaviour: bump it with any change that alters what
:func:`probe` returns; it enters probe trials' cache keys as
:data:`dataselect.train.trainer.CODE_VERSION` does fine-tune trials'."""


class _Constant:
    """Predicts the only class a subset holds (sklearn heads refuse one class)."""

    def __init__(self, label: int):
        self.label = label

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.label, dtype=np.int64)

    def proba(self, x: np.ndarray, num_labels: int) -> np.ndarray:
        out = np.zeros((len(x), num_labels), dtype=np.float32)
        out[:, self.label] = 1.0
        return out


def _proba(head: Any, x: np.ndarray, k: int) -> np.ndarray:
    """(m, k) float32 class probabilities of a fitted head (or the constant one)."""
    if isinstance(head, _Constant):
        return head.proba(x, k)
    # columns of predict_proba are head.classes_, a subset of 0..k-1
    out = np.zeros((len(x), k), dtype=np.float32)
    out[:, head.classes_] = head.predict_proba(x)
    return out


def probe(
    train_emb: np.ndarray,
    train_labels: np.ndarray,
    eval_emb: np.ndarray,
    eval_labels: np.ndarray,
    cfg: TrainerConfig,
    *,
    seed: int,
    num_labels: int | None = None,
    logdir: str | Path | None = None,
    hparams: Mapping[str, Any] | None = None,
    label_names: Sequence[str] | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Fit a logistic-regression or one-hidden-layer MLP head on frozen embeddings.

    Parameters
    ----------
    train_emb : ndarray, shape (n, d)
    train_labels : ndarray of int, shape (n,)
    eval_emb : ndarray, shape (m, d)
    eval_labels : ndarray of int, shape (m,)
    cfg : TrainerConfig
        ``probe`` (``"logreg"`` or ``"mlp"``) and ``probe_c`` (inverse L2
        strength: ``C`` for logreg, ``alpha = 1e-4 / probe_c`` for the MLP,
        so ``probe_c=1`` is sklearn's default for both).
    seed : int
        ``random_state`` of the head.
    num_labels : int, optional
        K; default ``max(label) + 1`` over both splits.
    logdir : path, optional
        TensorBoard run directory (``train/loss`` per MLP iteration or the
        final logreg train log-loss, ``eval/*``, ``subset/class_share/*``, HParams).
    label_names : sequence of str, optional
        Class names in label order, for TensorBoard (default: the digits).
    validation : (ndarray (v, d), ndarray (v,)), optional
        Embeddings and labels of the validation holdout: scored too, apart from
        the eval set (:func:`~dataselect.train.trainer.add_validation`).

    Returns
    -------
    dict
        Same metric keys as :func:`finetune`; ``degenerate`` is True when the
        subset held one class and the head predicts that class everywhere.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.neural_network import MLPClassifier

    x, y = np.asarray(train_emb, dtype=np.float32), np.asarray(train_labels, dtype=np.int64)
    xe, ye = np.asarray(eval_emb, dtype=np.float32), np.asarray(eval_labels, dtype=np.int64)
    if x.ndim != 2 or xe.ndim != 2 or x.shape[1] != xe.shape[1]:
        raise ValueError(f"train_emb {x.shape} and eval_emb {xe.shape} must be (n, d) and (m, d)")
    if len(x) != len(y) or len(xe) != len(ye):
        raise ValueError(f"embeddings and labels differ in length: train {len(x)} vs {len(y)}, "
                         f"eval {len(xe)} vs {len(ye)}")
    if len(x) == 0 or len(xe) == 0:
        raise DataError(f"probe needs rows in both splits; got train {len(x)}, eval {len(xe)}")
    k = num_labels if num_labels is not None else int(max(y.max(), ye.max())) + 1
    summary = subset_summary(y, k)
    board = Board(logdir)
    present = np.unique(y)
    converged = True
    t0 = time.perf_counter()
    losses: list[float] = []
    if len(present) < 2:
        log.warning("probe: training subset holds only class %d; predicting it everywhere", present[0])
        head: Any = _Constant(int(present[0]))
    else:
        if cfg.probe == "logreg":
            head = LogisticRegression(C=cfg.probe_c, max_iter=2000, random_state=seed)
        else:
            head = MLPClassifier(hidden_layer_sizes=(256,), alpha=1e-4 / cfg.probe_c,
                                 max_iter=300, random_state=seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            head.fit(x, y)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        if cfg.probe == "mlp":
            losses = [float(v) for v in head.loss_curve_]
        else:
            losses = [float(log_loss(y, head.predict_proba(x), labels=head.classes_))]
    train_s = time.perf_counter() - t0
    for i, v in enumerate(losses):
        board.scalar("train/loss", v, i)
    t1 = time.perf_counter()
    pred = np.asarray(head.predict(xe), dtype=np.int64)
    proba = _proba(head, xe, k)
    eval_s = time.perf_counter() - t1
    metrics = classification_metrics(ye, pred, k)
    result = training_result(
        "probe", cfg.probe, seed, metrics, summary, pred, k, proba=proba,
        train_loss=losses[-1] if losses else float("nan"), steps=len(losses),
        train_seconds=train_s, eval_seconds=eval_s, degenerate=len(present) < 2, converged=converged,
    )
    if validation is not None:
        xv = np.asarray(validation[0], dtype=np.float32)
        if xv.ndim != 2 or xv.shape[1] != x.shape[1] or len(xv) != len(validation[1]):
            raise ValueError(f"validation embeddings {xv.shape} and labels ({len(validation[1])}) do not "
                             f"match the train embeddings' width {x.shape[1]}")
        add_validation(result, validation[1], np.asarray(head.predict(xv), dtype=np.int64), _proba(head, xv, k), k)
    board.finish(hparams_record(cfg, seed, summary["n_train"], hparams), metrics, max(len(losses) - 1, 0),
                 summary["class_counts"], label_names)
    return result
