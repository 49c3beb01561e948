"""Perplexity band filter: drop the easiest and the noisiest rows, then choose."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dataselect.core.errors import InsufficientRowsError
from dataselect.selectors.base import Selection, Selector, check, is_real
from dataselect.selectors.registry import register

__all__ = ["PerplexityFilter"]


@register("perplexity")
@dataclass(frozen=True)
class PerplexityFilter(Selector):
    """Keep rows in a perplexity quantile band, then sample or rank them.

    Very low perplexity marks boilerplate or duplicated text (little to learn);
    very high perplexity marks noise, garbling or label-irrelevant rarities.
    Filtering both tails follows perplexity-based pruning of pretraining data
    [1]_ [2]_.

    Parameters
    ----------
    q_low, q_high : float, default=0.1, 0.9
        Quantiles of ``features["perplexity"]`` (n,) bounding the kept band,
        ``0 <= q_low < q_high <= 1``; both ends inclusive.
    rank_by : str or None, default=None
        ``None``: choose uniformly at random within the band. Otherwise the
        name of a 1-D feature (``token_count``, ``type_token_ratio``,
        ``flesch_reading_ease``, ``perplexity``, ...): take the band rows with
        the smallest values (ties to the lower row).
    descending : bool, default=False
        With ``rank_by``: take the largest values instead.

    Raises
    ------
    InsufficientRowsError
        At ``select`` time, when the band holds fewer rows than ``budget``:
        widening the band silently would change the method, so it is an error.

    Notes
    -----
    ``scores`` hold the ``rank_by`` value of each pick, or its perplexity when
    sampling at random. ``info`` reports the band in perplexity units.

    References
    ----------
    .. [1] G. Wenzek et al., "CCNet: Extracting High Quality Monolingual
       Datasets from Web Crawl Data", LREC 2020.
    .. [2] M. Marion et al., "When Less is More: Investigating Data Pruning
       for Pretraining LLMs at Scale", arXiv:2309.04564, 2023.
    """

    requires: ClassVar[tuple[str, ...]] = ("perplexity",)
    renamed: ClassVar[dict[str, str]] = {"p_low": "q_low", "p_high": "q_high"}
    """Former parameter names, still accepted (one spelling for a quantile band: ``q_*``)."""
    column: ClassVar[str] = "perplexity"
    """The score column the band is drawn on (subclasses swap it)."""
    q_low: float = 0.1
    q_high: float = 0.9
    rank_by: str | None = None
    descending: bool = False

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check(owner, "q_low", self.q_low, is_real(self.q_low) and 0 <= self.q_low < 1,
              "a number in [0, 1)")
        check(owner, "q_high", self.q_high, is_real(self.q_high) and 0 < self.q_high <= 1,
              "a number in (0, 1]")
        check(owner, "q_high", self.q_high, self.q_high > self.q_low,
              f"greater than q_low={self.q_low!r}")
        check(owner, "rank_by", self.rank_by,
              self.rank_by is None or (isinstance(self.rank_by, str) and self.rank_by != ""),
              "None or a feature name")
        check(owner, "rank_by", self.rank_by, self.rank_by != "embedding",
              "a 1-D feature, not 'embedding'")
        check(owner, "descending", self.descending, isinstance(self.descending, bool), "a bool")

    @property
    def seeded(self) -> bool:  # type: ignore[override]
        """Random picks within the band; ranked picks ignore the seed."""
        return self.rank_by is None

    @property
    def prefix_consistent(self) -> bool:  # type: ignore[override]
        """A ranking of a budget-free band is cut at the budget; a random draw is not."""
        return self.rank_by is not None

    def required(self) -> tuple[str, ...]:
        if self.rank_by is None or self.rank_by == self.column:
            return self.requires
        return (*self.requires, self.rank_by)

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        ppl = features[self.column]
        lo, hi = np.quantile(ppl, [self.q_low, self.q_high])
        band = np.flatnonzero((ppl >= lo) & (ppl <= hi))
        if len(band) < budget:
            raise InsufficientRowsError(
                f"{type(self).__name__}: only {len(band)} of {n} rows have {self.column} in "
                f"quantiles [q_low={self.q_low}, q_high={self.q_high}] = [{lo:.4g}, {hi:.4g}], "
                f"fewer than budget={budget}; widen the band or lower the budget"
            )
        info = {"ppl_low": float(lo), "ppl_high": float(hi), "n_in_band": int(len(band))}
        if self.rank_by is None:
            picks = rng.choice(band, size=budget, replace=False)
            return Selection(picks, ppl[picks], info)
        key = features[self.rank_by][band]
        order = np.lexsort((band, -key if self.descending else key))
        picks = band[order[:budget]]
        return Selection(picks, features[self.rank_by][picks], info)

