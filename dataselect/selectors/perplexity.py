"""Perplexity band filter: drop the easiest and the noisiest rows, then choose."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dataselect.errors import DataError
from dataselect.selectors.base import Selection, Selector, check, is_real
from dataselect.selectors.registry import register

__all__ = ["InsufficientRowsError", "PerplexityFilter", "PseudoPerplexityFilter"]


class InsufficientRowsError(DataError):
    """The perplexity band holds fewer rows than the budget."""


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
    p_low, p_high : float, default=0.1, 0.9
        Quantiles of ``features["perplexity"]`` (n,) bounding the kept band,
        ``0 <= p_low < p_high <= 1``; both ends inclusive.
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
    column: ClassVar[str] = "perplexity"
    """The score column the band is drawn on (subclasses swap it)."""
    p_low: float = 0.1
    p_high: float = 0.9
    rank_by: str | None = None
    descending: bool = False

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check(owner, "p_low", self.p_low, is_real(self.p_low) and 0 <= self.p_low < 1,
              "a number in [0, 1)")
        check(owner, "p_high", self.p_high, is_real(self.p_high) and 0 < self.p_high <= 1,
              "a number in (0, 1]")
        check(owner, "p_high", self.p_high, self.p_high > self.p_low,
              f"greater than p_low={self.p_low!r}")
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
        lo, hi = np.quantile(ppl, [self.p_low, self.p_high])
        band = np.flatnonzero((ppl >= lo) & (ppl <= hi))
        if len(band) < budget:
            raise InsufficientRowsError(
                f"{type(self).__name__}: only {len(band)} of {n} rows have {self.column} in "
                f"quantiles [p_low={self.p_low}, p_high={self.p_high}] = [{lo:.4g}, {hi:.4g}], "
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


@register("pseudo_perplexity")
@dataclass(frozen=True)
class PseudoPerplexityFilter(PerplexityFilter):
    """:class:`PerplexityFilter` on the masked-LM ``pseudo_perplexity`` column.

    Same band, sampling and ranking (parameters, errors and ``info`` as
    there, with ``features["pseudo_perplexity"]`` in place of
    ``perplexity``). Pseudo-perplexity scores each token given *both* sides
    [1]_, so it reads a sentence the way the bidirectional encoders that
    get fine-tuned here do, where a causal LM's perplexity sees only the
    left context. Needs ``features.mlm_model``.

    References
    ----------
    .. [1] J. Salazar, D. Liang, T. Q. Nguyen, K. Kirchhoff, "Masked Language
       Model Scoring", ACL 2020.
    """

    requires: ClassVar[tuple[str, ...]] = ("pseudo_perplexity",)
    column: ClassVar[str] = "pseudo_perplexity"
