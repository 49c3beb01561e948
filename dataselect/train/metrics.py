"""Classification metrics shared by fine-tuning, probes and the report.

All averages are macro over ``labels=range(num_labels)`` with
``zero_division=0``: a class that a small subset never predicts (or never
contains) counts as 0, instead of being silently dropped from the average
as sklearn does when ``labels`` is left to what appears in ``y_true``/``y_pred``.
That keeps numbers comparable across subsets with different class coverage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

METRICS: tuple[str, ...] = ("accuracy", "macro_f1", "precision", "recall")
"""The metric keys every training result carries, in report order."""


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_labels: int
) -> dict[str, float]:
    """Accuracy and macro F1 / precision / recall over all ``num_labels`` classes.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
        Gold and predicted class ids in ``0..num_labels-1``.
    num_labels : int
        Number of classes K (>= 2); binary tasks are macro-averaged too, so
        binary and multi-class numbers mean the same thing.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has shape {y_pred.shape}")
    if len(y_true) == 0:
        raise ValueError("classification_metrics needs at least one example; got 0")
    if num_labels < 2:
        raise ValueError(f"num_labels must be >= 2; got {num_labels}")
    labels = list(range(num_labels))
    kw = {"labels": labels, "average": "macro", "zero_division": 0}
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, **kw)),
        "precision": float(precision_score(y_true, y_pred, **kw)),
        "recall": float(recall_score(y_true, y_pred, **kw)),
    }


def class_counts(labels: Sequence[int] | np.ndarray, num_labels: int) -> list[int]:
    """Rows per class id ``0..num_labels-1`` (zeros included), e.g. of a selected subset."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_labels):
        raise ValueError(f"labels must be in [0, {num_labels - 1}]; got range [{labels.min()}, {labels.max()}]")
    return np.bincount(labels, minlength=num_labels).astype(int).tolist()


def subset_summary(labels: Sequence[int] | np.ndarray, num_labels: int) -> dict[str, object]:
    """Class coverage of a training subset: counts, missing classes, majority share.

    A subset that misses a class is legal (tiny budgets, skewed selectors);
    this is what results report so the effect is visible, not hidden.
    """
    counts = class_counts(labels, num_labels)
    n = sum(counts)
    return {
        "n_train": n,
        "class_counts": counts,
        "missing_classes": [k for k, c in enumerate(counts) if c == 0],
        "majority_share": (max(counts) / n) if n else float("nan"),
    }


def class_tags(label_names: Sequence[str]) -> list[str]:
    """One TensorBoard tag part per class name, all distinct.

    Characters other than word characters, ``.`` and ``-`` become ``_`` (a
    ``/`` would nest the tag one level deeper in TensorBoard's UI); names that
    then coincide (``Sci/Tech`` and ``Sci_Tech``) get ``~2``, ``~3``... in label
    order, so no class hides another's scalar.
    """
    out: list[str] = []
    for name in label_names:
        base = re.sub(r"[^\w.-]+", "_", str(name)) or "_"
        tag, k = base, 1
        while tag in out:
            k += 1
            tag = f"{base}~{k}"
        out.append(tag)
    return out
