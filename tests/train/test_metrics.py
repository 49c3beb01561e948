"""Metrics against hand-computed values (a second implementation)."""

from __future__ import annotations

import numpy as np
import pytest

from dataselect.train.metrics import class_counts, classification_metrics, subset_summary


def _brute(y, p, k):
    prec, rec, f1 = [], [], []
    for c in range(k):
        tp = sum(1 for a, b in zip(y, p, strict=True) if a == c and b == c)
        fp = sum(1 for a, b in zip(y, p, strict=True) if a != c and b == c)
        fn = sum(1 for a, b in zip(y, p, strict=True) if a == c and b != c)
        pr = tp / (tp + fp) if tp + fp else 0.0
        rc = tp / (tp + fn) if tp + fn else 0.0
        prec.append(pr)
        rec.append(rc)
        f1.append(2 * pr * rc / (pr + rc) if pr + rc else 0.0)
    acc = sum(a == b for a, b in zip(y, p, strict=True)) / len(y)
    return {"accuracy": acc, "macro_f1": np.mean(f1), "precision": np.mean(prec), "recall": np.mean(rec)}


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force(k, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, 30)
    p = rng.integers(0, k, 30)
    got = classification_metrics(y, p, k)
    want = _brute(y.tolist(), p.tolist(), k)
    for m in want:
        assert got[m] == pytest.approx(want[m])


def test_class_never_predicted_counts_as_zero():
    # Constant predictor on a balanced binary set: macro F1 averages in a 0 for class 1.
    got = classification_metrics([0, 0, 1, 1], [0, 0, 0, 0], 2)
    assert got["accuracy"] == 0.5
    assert got["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)
    assert got["recall"] == pytest.approx(0.5)


def test_class_absent_from_gold_and_pred_still_averaged():
    got = classification_metrics([0, 1], [0, 1], 3)
    assert got["accuracy"] == 1.0
    assert got["macro_f1"] == pytest.approx(2 / 3)


def test_counts_and_summary():
    assert class_counts([2, 2, 0], 4) == [1, 0, 2, 0]
    s = subset_summary(np.array([1, 1, 1]), 2)
    assert s["n_train"] == 3 and s["missing_classes"] == [0] and s["majority_share"] == 1.0


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="shape"):
        classification_metrics([0, 1], [0], 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        class_counts([0, 2], 2)
