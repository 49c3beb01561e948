"""Per-row difficulty for the selectors that balance it against coverage (``ccs``, ``d2``).

One parameter names the source, ``score``:

* ``"el2n"``: EL2N of a cheap head (:meth:`~dataselect.selectors.importance.EL2N.row_scores`);
* ``"forgetting"``: forgetting events (:meth:`~dataselect.selectors.importance.Forgetting.row_scores`);
  never-learned rows (``inf``) become ``max finite + 1``, the hardest;
* ``"margin"``: ``1 - (p_y - max_{k != y} p_k)`` of the cross-fitted head
  (:func:`~dataselect.selectors.crossfit.crossfit_proba`), in [0, 2]: the
  own-label margin of AUM [1]_ measured out-of-fold on probabilities instead
  of averaged logits over training epochs;
* ``"column:<name>"``: a precomputed 1-D feature column, read as is.

Higher is harder for every source. ``score_params`` go to the scorer:
EL2N's / Forgetting's head parameters (``hidden``, ``epochs``, ``n_runs``,
``mode``, ...), ``n_folds`` / ``C`` for ``margin``, nothing for a column.
Scores reuse the per-process memo, so ``el2n`` and ``ccs``/``d2`` on the
same seed train the heads once.

References
----------
.. [1] G. Pleiss, T. Zhang, E. Elenberg, K. Q. Weinberger, "Identifying
   Mislabeled Data using the Area Under the Margin Ranking", NeurIPS 2020.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dataselect.core.errors import DataError, UserError
from dataselect.selectors.base import InvalidParameterError, Selector, check
from dataselect.selectors.crossfit import check_head_params, crossfit_proba, encode_labels
from dataselect.selectors.el2n import EL2N
from dataselect.selectors.forgetting import Forgetting

__all__ = ["PREPARED", "SOURCES", "DifficultyScored", "RowDifficulty", "prune_hardest"]

PREPARED = ("_difficulty", "_prune_score", "_pruned")
"""Columns :func:`prepare_difficulty` adds, all computed on the whole pool:
difficulty, the pruning score, and whether the row is pruned."""

SOURCES = ("el2n", "forgetting", "margin", "column:<name>")
_COLUMN = "column:"
_MARGIN = {"n_folds": 5, "C": 1.0}


@dataclass(frozen=True)
class DifficultyScored(Selector):
    """Base of ``ccs`` and ``d2``: the ``score`` / ``score_params`` pair, checked
    at construction (the scorer is built then), and :meth:`difficulty`."""

    score: str = "el2n"
    score_params: Mapping[str, Any] | None = None

    scores_pool: ClassVar[bool] = True

    def __post_init__(self) -> None:
        owner = type(self).__name__
        score, params = self.score, self.score_params
        check(owner, "score", score, isinstance(score, str) and (
            score in SOURCES[:3] or (score.startswith(_COLUMN) and len(score) > len(_COLUMN))),
            f"one of {list(SOURCES)}")
        check(owner, "score_params", params, params is None or isinstance(params, Mapping),
              "None or a mapping")
        params = dict(params or {})
        scorer: Selector | None = None
        if score.startswith(_COLUMN):
            check(owner, "score", score, score[len(_COLUMN):] not in ("embedding", "label"),
                  "a 1-D feature column, not 'embedding' or 'label'")
            check(owner, "score_params", params, not params, "empty for a column score")
        elif score == "margin":
            unknown = sorted(set(params) - set(_MARGIN))
            check(owner, "score_params", params, not unknown,
                  f"free of unknown keys {unknown}; valid: {list(_MARGIN)}")
            params = {**_MARGIN, **params}
            check_head_params(f"{owner}.score_params", params["n_folds"], params["C"])
        else:
            cls = EL2N if score == "el2n" else Forgetting
            try:
                scorer = cls(**params)
            except TypeError as err:
                raise InvalidParameterError(
                    f"{owner}.score_params: {cls.__name__} has no parameter(s) "
                    f"{sorted(set(params) - set(cls.__dataclass_fields__))}") from err
            except UserError as err:
                raise InvalidParameterError(f"{owner}.score_params: {err}") from err
            params = {k: v for k, v in scorer.params().items() if k not in ("keep", "per_class")}
        object.__setattr__(self, "_scorer", scorer)
        object.__setattr__(self, "_score_params", params)

    @property
    def column(self) -> str | None:
        """The feature column read as difficulty, or None for a computed score."""
        return self.score[len(_COLUMN):] if self.score.startswith(_COLUMN) else None

    def required(self) -> tuple[str, ...]:
        own = self.requires
        needs = (self.column,) if self.column else ("embedding", "label")
        return tuple(dict.fromkeys(own + needs))

    def params(self) -> dict[str, Any]:
        # Resolved scorer parameters, defaults included: cache keys follow a default change.
        return {**super().params(), "score_params": dict(self._score_params)}  # type: ignore[attr-defined]

    def pruning_scorer(self) -> DifficultyScored | None:
        """What ranks rows for pruning; None: :meth:`difficulty` itself."""
        return None

    def _prepared(self, features: dict[str, np.ndarray], n: int, budget: int,
                  rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return prepare_difficulty(self, self.pruning_scorer(), float(getattr(self, "beta", 0.0)),
                                  features, n, budget, rng)

    def prepare(self, features: dict[str, np.ndarray], n: int, budget: int,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
        return self._prepared(features, n, budget, rng)[0]

    def scored_rows(self, features: dict[str, np.ndarray], n: int, budget: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """(difficulty of every row, the rows left after pruning, info); scored on the pool
        when a :class:`~dataselect.selectors.stratify.PerClass` run prepared it."""
        if PREPARED[0] in features:
            cols, info = {k: features[k] for k in PREPARED}, {"score": self.score, "scored_on": "pool"}
        else:
            cols, info = self._prepared(features, n, budget, rng)
        kept, pruned = kept_rows(cols, budget)
        return cols[PREPARED[0]], kept, {**info, **pruned}

    def difficulty(
        self, features: dict[str, np.ndarray], n: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Difficulty of every row (n,), float64, higher = harder, and info to report."""
        owner = type(self).__name__
        if self.column:
            d = features[self.column]
            if d.ndim != 1:
                raise DataError(f"{owner}: features[{self.column!r}] must be 1-D; got shape {d.shape}")
            return d.astype(np.float64), {"score": self.score}
        if self.score == "margin":
            p = self._score_params  # type: ignore[attr-defined]
            classes, y = encode_labels(owner, features["label"], p["n_folds"])
            proba, _ = crossfit_proba(features["embedding"], y, n_folds=p["n_folds"],
                                      seed=int(rng.integers(2**31 - 1)), C=p["C"],
                                      n_classes=len(classes))
            own = proba[np.arange(n), y]
            rival = np.where(np.arange(len(classes)) == y[:, None], -np.inf, proba).max(axis=1)
            return 1.0 - (own - rival), {"score": "margin"}
        scorer = self._scorer  # type: ignore[attr-defined]
        if self.score == "el2n":
            return np.asarray(scorer.row_scores(features, n, rng), dtype=np.float64), {"score": "el2n"}
        scores, _ = scorer.row_scores(features, n, rng)
        finite = np.isfinite(scores)
        top = float(scores[finite].max()) + 1.0 if finite.any() else 0.0
        return np.where(finite, scores, top), {"score": "forgetting",
                                                "never_learned": int((~finite).sum())}


@dataclass(frozen=True)
class RowDifficulty(DifficultyScored):
    """A difficulty source on its own: D2's pruning score beside its ranking score."""

    def _select(self, features: dict[str, np.ndarray], n: int, budget: int,
                rng: np.random.Generator) -> Any:
        raise NotImplementedError("RowDifficulty only scores rows")


def prepare_difficulty(owner: DifficultyScored, pruner: DifficultyScored | None, beta: float,
                       features: dict[str, np.ndarray], n: int, budget: int,
                       rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The :data:`PREPARED` columns of the whole pool, and info.

    ``pruner`` scores the pruning (None: the owner's own difficulty); the
    pruning is :func:`prune_hardest` on that score.
    """
    d, info = owner.difficulty(features, n, rng)
    p = d if pruner is None or beta <= 0 else pruner.difficulty(features, n, rng)[0]
    kept, _ = prune_hardest(p, beta, budget, rng)
    pruned = np.ones(n, dtype=bool)
    pruned[kept] = False
    return {PREPARED[0]: d, PREPARED[1]: p, PREPARED[2]: pruned}, info


def kept_rows(cols: dict[str, np.ndarray], budget: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Rows not pruned (ascending), and info.

    Inside one class of a per-class run the pruning is the pool's: a class
    whose share is larger than its unpruned rows takes back its least hard
    pruned rows (lowest pruning score, then lowest row), so it keeps its
    share (the D2 authors' code fills such a shortfall with random kept rows
    of any class instead; at budgets of 1-20 % it does not arise).
    """
    p, pruned = cols[PREPARED[1]], cols[PREPARED[2]].copy()
    kept = np.flatnonzero(~pruned)
    if len(kept) < budget:
        back = np.flatnonzero(pruned)
        back = back[np.argsort(p[back], kind="stable")[: budget - len(kept)]]
        pruned[back] = False
        kept = np.flatnonzero(~pruned)
    return kept, {"n_pruned": int(pruned.sum()),
                  "prune_threshold": float(p[pruned].min()) if pruned.any() else None}


def prune_hardest(
    d: np.ndarray, beta: float, budget: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """Drop the ``floor(beta * n)`` hardest rows, never so many that fewer than
    ``budget`` remain; ties at the cut are broken by a seeded random order.

    Returns the kept rows (ascending) and info: ``n_pruned`` and the lowest
    pruned difficulty (None when nothing is pruned).
    """
    n = len(d)
    n_prune = min(math.floor(round(beta * n, 9)), n - budget)
    if n_prune <= 0:
        return np.arange(n), {"n_pruned": 0, "prune_threshold": None}
    order = np.lexsort((rng.permutation(n), -d))
    return np.sort(order[n_prune:]), {"n_pruned": int(n_prune),
                                      "prune_threshold": float(d[order[n_prune - 1]])}
