"""Compositions of registered selectors: sequential ``pipeline`` and score ``fusion``.

Both are configured in YAML as lists of ``{name, params, ...}`` entries and
build their members with :func:`~dataselect.selectors.registry.get_selector`
in ``__post_init__``, so an unknown name or a bad nested parameter fails at
config load with the entry's position in the message. ``required()`` is the
union of the members', ``seeded`` is true when any member is, and
``params()`` reports every member's resolved parameters (defaults included)
so cache keys change when a member's default does.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from dataselect.errors import DataError, UserError
from dataselect.selectors.base import (
    InvalidParameterError,
    Selection,
    Selector,
    check,
    is_int,
    is_real,
    take_rows,
)
from dataselect.selectors.registry import get_selector, register

__all__ = ["Fusion", "Pipeline", "rank_normalise"]


def _build(owner: str, field: str, entries: Any, extra: dict[str, Any]) -> tuple[
        tuple[dict[str, Any], ...], tuple[Selector, ...]]:
    """Check ``entries`` and build each member; ``extra`` maps allowed keys to defaults."""
    check(owner, field, entries, isinstance(entries, list | tuple) and len(entries) > 0,
          "a non-empty list of {name, params, ...} entries")
    specs, members = [], []
    allowed = ["name", "params", *extra]
    for i, entry in enumerate(entries):
        where = f"{field}[{i}]"
        check(owner, where, entry, isinstance(entry, Mapping), "a mapping with a 'name'")
        unknown = sorted(set(entry) - set(allowed))
        check(owner, where, entry, not unknown, f"free of unknown keys {unknown}; valid: {allowed}")
        name, params = entry.get("name"), entry.get("params") or {}
        check(owner, f"{where}.name", name, isinstance(name, str) and name != "", "a selector name")
        check(owner, f"{where}.params", params, isinstance(params, Mapping), "a mapping")
        try:
            member = get_selector(name, **dict(params))
        except UserError as err:  # unknown name is a KeyError: fold both into one kind
            raise InvalidParameterError(f"{owner}.{where}: {err}") from err
        members.append(member)
        specs.append({"name": name, "params": member.params(),
                      **{k: entry.get(k, default) for k, default in extra.items()}})
    return tuple(specs), tuple(members)


class _Composite(Selector):
    """What a composition of selectors derives from its members (set in
    ``_members`` by ``__post_init__``): it is seeded when any member is, and
    reads the union of their features."""

    @property
    def seeded(self) -> bool:  # type: ignore[override]
        return any(m.seeded for m in self._members)  # type: ignore[attr-defined]

    def required(self) -> tuple[str, ...]:
        cols = (c for m in self._members for c in m.required())  # type: ignore[attr-defined]
        return tuple(dict.fromkeys(cols))


@register("pipeline")
@dataclass(frozen=True)
class Pipeline(_Composite):
    """Sequential stages, e.g. quality filter → diversity → importance.

    Stage ``s`` runs its selector on the rows kept by stage ``s - 1`` (the
    whole pool for the first) and keeps ``keep`` of them; the last stage
    chooses exactly ``budget``. Positions are mapped back to the full table
    after every stage, so the result indexes the caller's rows and is a
    subset of every earlier stage's kept set.

    Parameters
    ----------
    stages : list of mapping
        ``{name, params, keep}`` each; ``params`` default to ``{}``
        (``per_class`` allowed). ``keep`` is required for every stage but the
        last and forbidden on the last: a float in (0, 1] keeps
        ``round(keep * m)`` of the ``m`` rows the stage receives, an int
        keeps that many rows.

    Raises
    ------
    InsufficientStageError
        At ``select`` time, when a stage would keep fewer rows than
        ``budget`` or more than it received: the pipeline never widens a
        stage silently.

    Notes
    -----
    Stage ``s`` gets its own generator, seeded by the ``s``-th draw of
    ``np.random.default_rng(seed).integers`` (deterministic from the seed).
    ``scores`` are the last stage's; ``info["stages"]`` lists each stage's
    name, rows in and kept, and its own ``info``.

    Examples
    --------
    YAML::

        name: pipeline
        params:
          stages:
            - {name: perplexity, params: {p_low: 0.05, p_high: 0.95}, keep: 0.6}
            - {name: semantic_lexical, params: {lexical_weight: 0.3}, keep: 0.5}
            - {name: el2n, params: {keep: lowest}}
    """

    stages: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        specs, members = _build("Pipeline", "stages", self.stages, {"keep": None})
        for i, spec in enumerate(specs):
            keep, last = spec["keep"], i == len(specs) - 1
            if last:
                check("Pipeline", f"stages[{i}].keep", keep, keep is None,
                      "absent on the last stage (it fills the budget)")
                continue
            ok = (is_int(keep) and keep >= 1) or (
                is_real(keep) and not is_int(keep) and 0 < keep <= 1)
            check("Pipeline", f"stages[{i}].keep", keep, ok,
                  "a fraction in (0, 1] or a row count >= 1")
        object.__setattr__(self, "stages", specs)
        object.__setattr__(self, "_members", members)

    def stage_counts(self, n: int, budget: int) -> list[int]:
        """Rows kept by each stage for a pool of ``n`` and ``budget``."""
        counts, m = [], n
        for i, spec in enumerate(self.stages):
            keep = spec["keep"]
            if keep is None:
                k = budget
            elif is_int(keep):
                k = int(keep)
            else:  # round half to even, as Python's round
                k = round(keep * m)
            if not budget <= k <= m:
                raise InsufficientStageError(
                    f"Pipeline.stages[{i}] ({spec['name']}, keep={keep!r}) would keep {k} of the "
                    f"{m} rows it receives; it must keep between budget={budget} and {m}")
            counts.append(k)
            m = k
        return counts

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        counts = self.stage_counts(n, budget)
        seeds = rng.integers(0, 2**63 - 1, size=len(self._members))
        kept = np.arange(n, dtype=np.int64)
        stages = []
        for spec, member, k, seed in zip(self.stages, self._members, counts, seeds, strict=True):
            sub = features if len(kept) == n else take_rows(features, kept)
            sel = member._select(sub, len(kept), k, np.random.default_rng(seed))
            stages.append({"name": spec["name"], "rows_in": int(len(kept)), "kept": k,
                           "info": sel.info})
            kept = kept[sel.indices]
        return Selection(kept, sel.scores, {"stages": stages})


class InsufficientStageError(DataError):
    """A pipeline stage would keep fewer rows than the budget (or more than it got)."""


@register("fusion")
@dataclass(frozen=True)
class Fusion(_Composite):
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
        specs, members = _build("Fusion", "members", self.members,
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
