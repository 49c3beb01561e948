"""Importance resampling without replacement: Gumbel top-k.

Adding independent Gumbel(0, 1) noise to log weights and keeping the k
largest draws k items without replacement, each draw with probability
proportional to its weight among the items left (Gumbel-max trick extended
to k; Vieira 2014; Kool, van Hoof & Welling, ICML 2019). DSIR resamples its
raw pool this way (Xie et al., NeurIPS 2023; the authors' package does the
same with ``np.random.gumbel``). The keys are fixed by the generator, so a
smaller budget keeps the first picks of a larger one (prefix-consistent).
"""

from __future__ import annotations

import numpy as np

__all__ = ["gumbel_top_k", "top_k"]


def top_k(keys: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest ``keys``, largest first; ties to the lower index."""
    keys = np.asarray(keys, dtype=np.float64)
    if k < len(keys):
        part = np.argpartition(-keys, k - 1)[:k]
        # argpartition does not order ties; a stable sort over the kept set plus
        # the boundary value makes the answer exact and platform-free.
        cut = keys[part].min()
        part = np.flatnonzero(keys >= cut)
    else:
        part = np.arange(len(keys))
    order = part[np.lexsort((part, -keys[part]))]
    return order[:k].astype(np.int64)


def gumbel_top_k(log_weights: np.ndarray, k: int, rng: np.random.Generator,
                 temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``k`` rows drawn without replacement with probability ∝ ``exp(log_weights / temperature)``.

    Returns ``(indices in draw order, their perturbed keys)``. ``temperature``
    above 1 flattens the weights toward uniform; ``inf`` is a uniform draw.
    """
    lw = np.asarray(log_weights, dtype=np.float64) / temperature
    keys = lw + rng.gumbel(size=lw.shape)
    idx = top_k(keys, k)
    return idx, keys[idx]
