"""What a selection is, and the column names selectors and stages share.

:class:`Selection` is the one thing every selector returns and a manifest
stores; it lives here, below both, so that the manifest (core) and the
selectors each import it downward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["RAGGED_COLUMNS", "TARGET_PREFIX", "Selection"]

TARGET_PREFIX = "target:"
"""A column named ``target:<column>`` holds ``<column>`` of the *target* rows (m of
them, the texts the classifier will be judged on), not the pool's n: a selector
that reads one selects toward the target. Row-slicing wrappers (per class,
pipeline stages, partitions) pass these columns through whole (:func:`take_rows`)."""

RAGGED_COLUMNS = frozenset({"ngram_buckets"})
"""Columns whose rows are integer vectors of different lengths (one object array of
int arrays), e.g. each row's hashed n-gram buckets."""



@dataclass(frozen=True)
class Selection:
    """Rows chosen by a selector.

    Attributes
    ----------
    indices : ndarray of int64, shape (budget,)
        Unique positions into the feature table, in pick order where the
        method has one (greedy methods), else grouped as documented.
    scores : ndarray of float64, shape (budget,), or None
        Per-row score at pick time (distance, objective, metric value).
    info : dict
        JSON-serialisable diagnostics (radius, inertia, allocation, ...).
    """

    indices: np.ndarray
    scores: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Normalise dtypes once and freeze the arrays: a frozen dataclass whose
        # arrays can be mutated in place is not frozen.
        idx = np.array(self.indices, dtype=np.int64).reshape(-1)
        idx.setflags(write=False)
        object.__setattr__(self, "indices", idx)
        if self.scores is not None:
            sc = np.array(self.scores, dtype=np.float64).reshape(-1)
            if sc.shape != idx.shape:
                raise ValueError(f"Selection.scores has {sc.size} values for {idx.size} indices")
            sc.setflags(write=False)
            object.__setattr__(self, "scores", sc)
