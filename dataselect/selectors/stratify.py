"""Per-class stratification, written once for every selector.

``get_selector(name, per_class=...)`` wraps any selector in :class:`PerClass`:
the budget is split across labels, the inner selector runs inside each class
on that class's rows only, and its positions are mapped back to global rows
(DeepCore's ``herding`` once returned within-class positions; the mapping
lives here, in one place, and is tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dataselect.selectors.base import (
    Selection,
    Selector,
    Wrapping,
    check,
    largest_remainder,
    take_rows,
)

__all__ = ["PER_CLASS_MODES", "PerClass", "balanced_shares", "class_shares"]

PER_CLASS_MODES = ("none", "proportional", "balanced")


@dataclass(frozen=True)
class PerClass(Wrapping, Selector):
    """Run ``inner`` within each label and concatenate the global picks.

    Parameters
    ----------
    inner : Selector
        Any selector; it sees one class's rows at a time.
    per_class : {"proportional", "balanced"}
        ``proportional``: shares proportional to class sizes, rounded by
        largest remainder (ties to the smaller label). ``balanced``: equal
        shares; a class smaller than its share gives all its rows and the
        rest is re-split among the others.

    Notes
    -----
    Output is grouped by label (sorted), each group in the inner selector's
    pick order. Class ``c`` gets its own generator, spawned from the seed in
    label order, so the picks in one class do not depend on another's budget.
    A selector that learns scores from the pool (``scores_pool``: EL2N,
    forgetting, margins) computes them on the whole pool first
    (:meth:`~dataselect.selectors.base.Selector.prepare`); only the budget is
    stratified.
    """

    inner: Selector
    per_class: str = "proportional"

    def __post_init__(self) -> None:
        owner = type(self.inner).__name__
        check("PerClass", "inner", self.inner, isinstance(self.inner, Selector) and
              not isinstance(self.inner, PerClass), "a (non-PerClass) Selector")
        check(owner, "per_class", self.per_class,
              self.per_class in ("proportional", "balanced"), "'proportional' or 'balanced'")
        self._refuse_initial(owner, self.inner, f"per_class={self.per_class!r}")

    def required(self) -> tuple[str, ...]:
        return self._required_with("label")

    def params(self) -> dict[str, Any]:
        return {**self.inner.params(), "per_class": self.per_class}

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        classes, label_idx = np.unique(features["label"], return_inverse=True)
        sizes = np.bincount(label_idx, minlength=len(classes))
        if self.per_class == "proportional":
            shares = class_shares(sizes, budget)
        else:
            shares = balanced_shares(sizes, budget)
        if self.inner.scores_pool:  # scores learnt on the whole pool, then stratified
            prep = np.random.default_rng(rng.integers(0, 2**63 - 1))
            features = {**features, **self.inner.prepare(features, n, budget, prep)}
        seeds = rng.integers(0, 2**63 - 1, size=len(classes))
        picks, scores, infos = [], [], {}
        for c, (share, sub_seed) in enumerate(zip(shares, seeds, strict=True)):
            if share == 0:
                continue
            rows = np.flatnonzero(label_idx == c)
            sub = take_rows(features, rows)
            sel = self.inner._select(sub, len(rows), int(share), np.random.default_rng(sub_seed))
            picks.append(rows[sel.indices])
            scores.append(sel.scores)
            infos[_key(classes[c])] = sel.info
        has_scores = all(s is not None for s in scores)
        return Selection(
            np.concatenate(picks),
            np.concatenate(scores) if has_scores else None,
            {
                "per_class": self.per_class,
                "allocation": {_key(c): int(s) for c, s in zip(classes, shares, strict=True)},
                "class_sizes": {_key(c): int(s) for c, s in zip(classes, sizes, strict=True)},
                "classes": infos,
            },
        )


def _key(label: Any) -> str:
    return str(label.item() if isinstance(label, np.generic) else label)


def class_shares(sizes: np.ndarray, budget: int) -> np.ndarray:
    """Proportional shares by largest remainder (see :func:`largest_remainder`)."""
    return largest_remainder(sizes, budget)


def balanced_shares(sizes: np.ndarray, budget: int) -> np.ndarray:
    """Equal shares capped by class size, the surplus re-split (water-filling).

    Each round gives every class with room ``left // k`` more rows (capped at
    its size); when fewer rows than open classes remain, one more row goes to
    each of the first open classes in label order. Sums to ``budget`` when
    ``budget <= sum(sizes)``.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    shares = np.zeros_like(sizes)
    left = int(budget)
    while left > 0:
        open_ = np.flatnonzero(shares < sizes)
        each = left // len(open_)
        if each == 0:
            shares[open_[:left]] += 1
            break
        add = np.minimum(each, sizes[open_] - shares[open_])
        shares[open_] += add
        left -= int(add.sum())
    return shares
