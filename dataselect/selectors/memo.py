"""Per-process memo of expensive, budget-independent per-row scores.

A grid asks the same question many times: cleanlab, self_filter and entropy
at every fraction share a seed's out-of-fold probabilities; GraNd and EL2N
score every row the same way at 5, 10 and 20 % (and ``el2n`` / ``el2n-easy``
differ only in which end they keep). A select-stage Ray worker runs many
cells, so caching the score arrays in the process turns repeats into one hash
of the inputs (~0.1 s for all of SST-2). Results are returned read-only so a
caller cannot corrupt the cache; selectors stay pure (same output, faster).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

__all__ = ["memoized"]

T = TypeVar("T")

_CACHE: dict[tuple, Any] = {}
_SIZE = 16


def _digest(a: np.ndarray | None) -> str | None:
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    h = hashlib.blake2b(a.view(np.uint8).reshape(-1), digest_size=16).hexdigest()
    return f"{h}:{a.dtype}:{a.shape}"


def memoized(tag: str, arrays: tuple[np.ndarray | None, ...], params: tuple[Any, ...],
             compute: Callable[[], T]) -> T:
    """``compute()``, or its earlier result for equal ``arrays`` (by content) and ``params``.

    ``tag`` names the computation; ``params`` must hold everything else the
    result depends on (seeds included). Arrays in the result are made read-only.
    """
    key = (tag, *map(_digest, arrays), *map(repr, params))
    if key in _CACHE:
        return _CACHE[key]
    out = compute()
    for arr in out if isinstance(out, tuple) else (out,):
        if isinstance(arr, np.ndarray):
            arr.setflags(write=False)
    _CACHE[key] = out
    while len(_CACHE) > _SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    return out
