"""A cheap classifier head on cached embeddings, and what it reports while it trains.

One place for "train a small softmax / MLP head for E epochs with seeded
minibatch Adam and report per-row correctness and probabilities as it
goes": the importance selectors (``grand``, ``el2n``, ``forgetting`` in
:mod:`dataselect.selectors.importance`) all read training dynamics of this
head instead of fine-tuning the encoder, so they cost seconds on 67k rows.

The head is a functional parameter dict (``init_head`` / ``head_logits``)
rather than an ``nn.Module``: ``torch.func.grad`` differentiates it directly
and its initialisation draws from a private ``torch.Generator`` (module
initialisers would read torch's global RNG). Every helper runs under
:func:`torch_single_thread`: one intra-op thread makes the float reductions
run in one order, so a seed gives bit-identical scores in any process (the
select stage's Ray tasks run on one CPU anyway).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

__all__ = [
    "encode_labels",
    "head_logits",
    "init_head",
    "predict_proba",
    "standardize",
    "torch_single_thread",
    "train_head",
]

Params = dict[str, torch.Tensor]
_BLOCK = 8192  # rows per block in standardize
OnBatch = Callable[[int, np.ndarray, np.ndarray, torch.Tensor], None]
"""``on_batch(epoch, rows, correct, probs)``: rows of the minibatch (pool
positions), whether the head predicted each correctly and its softmax
probabilities (batch, k), all from the forward pass *before* the update."""


@contextlib.contextmanager
def torch_single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def encode_labels(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels (any sortable values) to ``0..k-1`` (sorted order) and ``k``."""
    classes, y = np.unique(labels, return_inverse=True)
    return y.astype(np.int64), len(classes)


def standardize(x: np.ndarray) -> torch.Tensor:
    """Zero mean, unit variance per dimension, float32 (constant dims stay 0).

    Makes the head's optimisation and the gradient norms independent of the
    encoder's output scale.
    """
    # Blocks of rows: float64 accuracy without (n, d) float64 temporaries.
    n, d = x.shape
    mean = x.mean(axis=0, dtype=np.float64)
    var = np.zeros(d)
    for lo in range(0, n, _BLOCK):
        var += ((x[lo : lo + _BLOCK] - mean) ** 2).sum(axis=0)
    sd = np.sqrt(var / n)
    sd[sd == 0] = 1.0
    out = np.empty((n, d), dtype=np.float32)
    for lo in range(0, n, _BLOCK):
        out[lo : lo + _BLOCK] = (x[lo : lo + _BLOCK] - mean) / sd
    return torch.from_numpy(out)


def init_head(d: int, k: int, hidden: int, seed: int) -> Params:
    """Seeded parameters of a linear (``hidden=0``) or one-hidden-layer ReLU head.

    Uniform ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` weights and biases, the
    ``nn.Linear`` default, drawn from a ``torch.Generator`` seeded with ``seed``.
    """
    gen = torch.Generator().manual_seed(int(seed))
    dims = [d, hidden, k] if hidden else [d, k]
    params: Params = {}
    for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        bound = 1.0 / math.sqrt(fan_in)
        params[f"w{i}"] = (torch.rand(fan_out, fan_in, generator=gen) * 2 - 1) * bound
        params[f"b{i}"] = (torch.rand(fan_out, generator=gen) * 2 - 1) * bound
    return params


def head_logits(params: Params, x: torch.Tensor) -> torch.Tensor:
    """Logits (batch, k) of the head ``params`` on rows ``x`` (batch, d)."""
    n_layers = len(params) // 2
    h = x
    for i in range(n_layers):
        h = h @ params[f"w{i}"].T + params[f"b{i}"]
        if i < n_layers - 1:
            h = torch.relu(h)
    return h


def train_head(
    x: torch.Tensor,
    y: np.ndarray,
    k: int,
    *,
    hidden: int,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    on_batch: OnBatch | None = None,
    on_epoch: Callable[[int, Params], None] | None = None,
) -> Params:
    """Train a head with minibatch Adam on cross-entropy; inputs are trusted.

    Parameters
    ----------
    x : Tensor of float32, shape (n, d)
        Usually :func:`standardize`-d embeddings.
    y : ndarray of int64, shape (n,)
        Classes in ``0..k-1``.
    hidden, epochs, batch_size, lr : int, int, int, float
        Head width (0: linear softmax), passes over the rows, minibatch size,
        Adam learning rate.
    seed : int
        Initialisation (:func:`init_head`) and the per-epoch row order.
    on_batch : callable, optional
        Called once per minibatch with its pre-update predictions (see
        ``OnBatch``); every row is presented exactly once per epoch.
    on_epoch : callable, optional
        ``on_epoch(epoch, params)`` after each epoch's last update (params
        are live tensors: read them under ``torch.no_grad``, do not keep them).

    Returns
    -------
    dict of str to Tensor
        The trained parameters (detached).
    """
    n, d = x.shape
    rng = np.random.default_rng(seed)
    params = init_head(d, k, hidden, int(rng.integers(2**63 - 1)))
    for p in params.values():
        p.requires_grad_(True)
    opt = torch.optim.Adam(list(params.values()), lr=lr)
    yt = torch.from_numpy(y)
    for epoch in range(epochs):
        order = rng.permutation(n)
        for lo in range(0, n, batch_size):
            rows = order[lo : lo + batch_size]
            idx = torch.from_numpy(rows)
            logits = head_logits(params, x[idx])
            loss = torch.nn.functional.cross_entropy(logits, yt[idx])
            if on_batch is not None:
                with torch.no_grad():
                    probs = torch.softmax(logits, dim=1)
                    correct = (probs.argmax(dim=1) == yt[idx]).numpy()
                on_batch(epoch, rows, correct, probs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if on_epoch is not None:
            on_epoch(epoch, params)
    return {name: p.detach() for name, p in params.items()}


def predict_proba(params: Params, x: torch.Tensor, batch_size: int = 8192) -> np.ndarray:
    """Softmax probabilities (n, k), float64, computed in blocks of rows."""
    out = []
    with torch.no_grad():
        for lo in range(0, len(x), batch_size):
            out.append(torch.softmax(head_logits(params, x[lo : lo + batch_size]), dim=1))
    return torch.cat(out).numpy().astype(np.float64)
