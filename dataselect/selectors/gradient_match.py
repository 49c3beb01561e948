"""``gradient_match``: keep the rows whose training gradient points where the target's does.

LESS (Xia, Malladi, Gururangan, Arora & Chen, "LESS: Selecting Influential
Data for Targeted Instruction Tuning", ICML 2024) scores a training example
by the cosine between its (randomly projected) loss gradient and the mean
gradient of target examples, summed over warm-up checkpoints weighted by
their learning rate: a first-order estimate of how much a step on the
example lowers the target loss (TracIn, Pruthi, Liu, Kale & Sundararajan,
NeurIPS 2020).

Here, on the CPU, the model is a softmax head on the cached sentence
embeddings: warmed up by full-batch gradient descent on a seeded random
slice of the pool (LESS: 5 %), with a checkpoint every ``steps /
checkpoints`` steps. A row's gradient at a checkpoint is
``[x, 1] ⊗ (softmax(W·[x, 1]) - onehot(y))``; it is reduced with a seeded
Gaussian projection (Johnson–Lindenstrauss, as LESS's random projection)
and normalised. Target rows have no labels unless the study gives a
labelled slice (``target.labelled``); otherwise each target row takes the
warmed-up head's predicted label (said in ``info["target_labels"]``).
Differences from LESS: head gradients, not LoRA gradients of the whole
model; plain gradient descent, so no Adam preconditioning of the training
gradients. The warm-up training is part of the selection (its seconds are
in the selection's cost; ``info`` holds only what the picks depend on, so
manifests stay identical run to run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dataselect.core.errors import DataError
from dataselect.selectors.base import TARGET_PREFIX, Selection, Selector, check, is_int, is_real
from dataselect.selectors.registry import register
from dataselect.selectors.resample import top_k

__all__ = ["GradientMatch", "softmax_head_steps"]


def softmax_head_steps(x: np.ndarray, y: np.ndarray, k: int, steps: int, lr: float,
                       keep: set[int]) -> dict[int, np.ndarray]:
    """Full-batch gradient descent on mean cross-entropy of a softmax head ``W`` ((d + 1) x k).

    ``x`` (n, d) already carries no bias column; returns ``{step: W}`` for
    every step in ``keep`` (step s = the weights after s updates).
    """
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1), x.dtype)])
    w = np.zeros((d + 1, k))
    onehot = np.eye(k)[y]
    out = {}
    for s in range(1, steps + 1):
        w -= lr * (xb.T @ (_softmax(xb @ w) - onehot)) / n
        if s in keep:
            out[s] = w.copy()
    return out


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def projected_grads(x: np.ndarray, y: np.ndarray, w: np.ndarray, proj: np.ndarray) -> np.ndarray:
    """Unit-norm projected per-row gradients (n, dim) of the head's cross-entropy at ``w``.

    The gradient of row i is ``xb_i ⊗ δ_i`` (δ = p - onehot(y)); projected by
    ``proj`` ((d + 1) k x dim) it is ``Σ_c δ_ic (xb_i @ proj_c)``, computed
    class by class so no (n, (d + 1) k) matrix is formed.
    """
    n = len(x)
    xb = np.hstack([x, np.ones((n, 1), x.dtype)])
    k = w.shape[1]
    delta = _softmax(xb @ w)
    delta[np.arange(n), y] -= 1.0
    d1 = xb.shape[1]
    g = np.zeros((n, proj.shape[1]))
    for c in range(k):
        g += delta[:, c:c + 1] * (xb @ proj[c * d1:(c + 1) * d1])
    norm = np.linalg.norm(g, axis=1, keepdims=True)
    return g / np.maximum(norm, 1e-12)


@register("gradient_match")
@dataclass(frozen=True)
class GradientMatch(Selector):
    """Rows ranked by the summed cosine of their gradient with the mean target gradient.

    Parameters
    ----------
    column : str, default="embedding_norm"
        Embeddings of pool and target (standardised with the warm-up
        slice's statistics).
    warmup_fraction : float in (0, 1], default=0.05
        Share of the pool, drawn with the seed, that warms the head up
        (at least 16 rows per class present).
    steps : int >= 1, default=200
        Full-batch gradient steps of the warm-up.
    lr : float > 0, default=0.5
        Step size (constant, so the checkpoints weigh equally).
    checkpoints : int >= 1, default=4
        Gradients are taken after every ``steps / checkpoints`` steps.
    dim : int >= 8, default=256
        Random projection width.

    Notes
    -----
    Reads ``column`` and ``label`` of the pool and ``target:column`` and
    ``target:label`` (-1 where unknown). ``scores`` are the picks' summed
    cosines (in [-checkpoints, checkpoints]).
    """

    column: str = "embedding_norm"
    warmup_fraction: float = 0.05
    steps: int = 200
    lr: float = 0.5
    checkpoints: int = 4
    dim: int = 256

    prefix_consistent: ClassVar[bool] = True

    def __post_init__(self) -> None:
        owner = "GradientMatch"
        check(owner, "column", self.column, isinstance(self.column, str) and self.column != ""
              and not self.column.startswith(TARGET_PREFIX), "a pool column name")
        check(owner, "warmup_fraction", self.warmup_fraction,
              is_real(self.warmup_fraction) and 0 < self.warmup_fraction <= 1, "a fraction in (0, 1]")
        check(owner, "steps", self.steps, is_int(self.steps) and self.steps >= 1, "an int >= 1")
        check(owner, "lr", self.lr, is_real(self.lr) and self.lr > 0, "a positive number")
        check(owner, "checkpoints", self.checkpoints,
              is_int(self.checkpoints) and 1 <= self.checkpoints <= self.steps, f"an int in [1, steps={self.steps}]")
        check(owner, "dim", self.dim, is_int(self.dim) and self.dim >= 8, "an int >= 8")

    def required(self) -> tuple[str, ...]:
        return (self.column, "label", TARGET_PREFIX + self.column, TARGET_PREFIX + "label")

    def warmup(self, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
        """Pool rows (ascending) that warm the head up: ``warmup_fraction`` of ``n``, at
        least 16 per class, the first draw from ``rng``. Under ``grid.selector_streams:
        shared`` at fraction = ``warmup_fraction`` it is ``random``'s subset at the same seed."""
        size = min(n, max(int(round(self.warmup_fraction * n)), 16 * k))
        return np.sort(rng.choice(n, size=size, replace=False))

    def scores(self, features: dict[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        """Summed cosine per pool row, and diagnostics (warm-up size and accuracy, target labels)."""
        from threadpoolctl import threadpool_limits

        x = np.asarray(features[self.column], np.float64)
        xt = np.asarray(features[TARGET_PREFIX + self.column], np.float64)
        classes, y = np.unique(features["label"], return_inverse=True)
        k = len(classes)
        if k < 2:
            raise DataError("GradientMatch needs at least 2 classes in the pool (per_class leaves one: "
                            "use per_class='none')")
        n = len(x)
        warm = self.warmup(n, k, rng)
        size = len(warm)
        mu, sd = x[warm].mean(axis=0), x[warm].std(axis=0) + 1e-12
        xs, xts = (x - mu) / sd, (xt - mu) / sd
        every = self.steps // self.checkpoints
        keep = {every * (c + 1) for c in range(self.checkpoints)}
        proj = rng.standard_normal(((x.shape[1] + 1) * k, self.dim)) / np.sqrt(self.dim)
        tlab = np.asarray(features[TARGET_PREFIX + "label"]).astype(np.int64)
        given = tlab >= 0
        with threadpool_limits(limits=1):  # bit-identical results in any process
            heads = softmax_head_steps(xs[warm], y[warm], k, self.steps, self.lr, keep)
            last = heads[max(heads)]
            if given.any():
                pos = np.searchsorted(classes, tlab[given])
                if (pos >= k).any() or not np.array_equal(classes[np.minimum(pos, k - 1)], tlab[given]):
                    raise DataError("GradientMatch: target labels are not classes of the pool")
                tx, ty = xts[given], pos
                how = f"given ({int(given.sum())} labelled target rows)"
            else:
                tx, ty = xts, np.argmax(np.hstack([xts, np.ones((len(xts), 1))]) @ last, axis=1)
                how = f"predicted by the warmed-up head ({len(xts)} target rows)"
            total = np.zeros(n)
            for s in sorted(heads):
                g_target = projected_grads(tx, ty, heads[s], proj).mean(axis=0)
                g_target /= max(np.linalg.norm(g_target), 1e-12)
                total += projected_grads(xs, y, heads[s], proj) @ g_target
            acc = float((np.argmax(np.hstack([xs[warm], np.ones((size, 1))]) @ last, axis=1) == y[warm]).mean())
        info = {"warmup_rows": int(size), "warmup_train_accuracy": acc, "target_labels": how}
        return total, info

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        total, info = self.scores(features, rng)
        picks = top_k(total, budget)
        return Selection(picks, total[picks], info)
