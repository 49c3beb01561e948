"""``fusion``: a weighted mean of several selectors' rank-normalised preferences."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from dataselect.core.errors import DataError
from dataselect.selectors.base import (
    Selection,
    check,
    is_real,
)
from dataselect.selectors.composite import Composite, build_members
from dataselect.selectors.registry import register

__all__ = ['Fusion', 'rank_normalise']


@register("fusion")
@dataclass(frozen=True)
class Fusion(Composite):
    """Weighted fusion of several selectors' rank-normalised preferences.

    Each member orders the rows; its order is turned into a normalised rank
    in (0, 1] (1 = most preferred), the ranks are averaged with the members'
    weights, and the ``budget`` rows with the highest fused value are kept,
    e.g. EL2N (hard) fused with k-center (diverse) and a quality filter.

    Parameters
    ----------
    members : list of mapping
        ``{name, params, weight, by, descending, rows}`` each; ``params``
        default to ``{}``.

        weight : float >= 0, default 1
            Share of the member in the fused value (weights are normalised
            to sum to 1; at least one must be positive).
        by : {"order", "score"}, default "order"
            What ranks the member's rows. ``order``: its pick order (first
            pick best): right for greedy selectors (k-center, herding) and
            for score selectors that return their picks best-first (grand,
            el2n, forgetting, ranked perplexity). ``score``: its
            ``Selection.scores`` (error if it returns none).
        descending : bool, default True
            ``by=score``: higher scores preferred. ``by=order``: earlier
            picks preferred; False prefers later picks (e.g. the easiest
            rows of a full el2n ranking).
        rows : {"all", "budget"}, default "all"
            ``all``: run the member with ``budget = n`` so every row is
            ranked (cheap for score selectors; O(n^2) for k-center/herding,
            and impossible for selectors that cannot pick every row, such
            as the perplexity band filter). ``budget``: run it with the
            fusion's budget; rows it does not pick tie at the lowest rank.

    Notes
    -----
    Ranks: ``rank_normalise`` gives the average rank among all ``n`` rows
    divided by ``n``, so ties (equal scores, or the unpicked rows of a
    ``rows=budget`` member) share the mean of their positions and a member
    contributes the same total whatever its scale or direction. Fused
    ties go to the lower row. Every member gets a copy of the fusion's
    generator, i.e. the same seed it would get alone, so a one-member
    fusion with weight 1 returns exactly that member's picks (``by=order``;
    ``rows=all`` when the member's picks at a budget are the first picks of
    its full run, true for greedy and score-ranked selectors). ``scores``
    hold each pick's fused value; ``info["members"]`` each member's info.
    """

    members: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        specs, members = build_members("Fusion", "members", self.members,
                                {"weight": 1.0, "by": "order", "descending": True, "rows": "all"})
        for i, spec in enumerate(specs):
            where = f"members[{i}]"
            w = spec["weight"]
            check("Fusion", f"{where}.weight", w, is_real(w) and w >= 0, "a number >= 0")
            check("Fusion", f"{where}.by", spec["by"], spec["by"] in ("order", "score"),
                  "'order' or 'score'")
            check("Fusion", f"{where}.descending", spec["descending"],
                  isinstance(spec["descending"], bool), "a bool")
            check("Fusion", f"{where}.rows", spec["rows"], spec["rows"] in ("all", "budget"),
                  "'all' or 'budget'")
        weights = [s["weight"] for s in specs]
        check("Fusion", "members", weights, sum(weights) > 0, "weighted with at least one weight > 0")
        object.__setattr__(self, "members", specs)
        object.__setattr__(self, "_members", members)

    @property
    def prefix_consistent(self) -> bool:  # type: ignore[override]
        """Members that rank every row make the fused value budget-free: the top ``budget`` is a prefix."""
        return all(s["rows"] == "all" for s in self.members if s["weight"] != 0)

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        total = sum(s["weight"] for s in self.members)
        fused = np.zeros(n)
        infos = []
        for i, (spec, member) in enumerate(zip(self.members, self._members, strict=True)):
            if spec["weight"] == 0:
                continue
            k = n if spec["rows"] == "all" else budget
            sel = member._select(features, n, k, copy.deepcopy(rng))
            if spec["by"] == "score" and sel.scores is None:
                raise DataError(f"Fusion.members[{i}] ({spec['name']}) returns no scores; "
                                "use by='order'")
            value = sel.scores if spec["by"] == "score" else -np.arange(k, dtype=np.float64)
            # Raw ranks are half-integers: sums of them are exact for simple
            # weights, so tied rows stay tied until the final division.
            fused += spec["weight"] * _ranks(n, sel.indices, value if spec["descending"] else -value)
            infos.append({"name": spec["name"], "info": sel.info})
        picks = np.lexsort((np.arange(n), -fused))[:budget]
        return Selection(picks, fused[picks] / (total * n), {"members": infos})


def rank_normalise(n: int, rows: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Normalised ranks (n,) in (0, 1], higher ``value`` → higher rank.

    ``rows`` (m,) are the ranked rows with their ``value`` (m,); the other
    ``n - m`` rows tie below all of them. Ties share their average rank
    (``scipy.stats.rankdata(method="average")``), divided by ``n``.
    """
    return _ranks(n, rows, value) / n


def _ranks(n: int, rows: np.ndarray, value: np.ndarray) -> np.ndarray:
    m = len(rows)
    out = np.full(n, (n - m + 1) / 2)  # mean of the bottom ranks 1..n-m
    out[rows] = (n - m) + rankdata(value, method="average")
    return out
