"""``stratified_coreset``: seed-free bins over attributes, the most central rows of each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.stats import rankdata

from dataselect.core.errors import DataError
from dataselect.selectors.base import (
    Selection,
    Selector,
    check,
    is_int,
    is_name_list,
    largest_remainder,
)
from dataselect.selectors.herding import herding
from dataselect.selectors.registry import register

__all__ = ["StratifiedCoreset", "quantile_bins"]



@register("stratified_coreset")
@dataclass(frozen=True)
class StratifiedCoreset(Selector):
    """Deterministic coverage of text attributes: bins over label × length × readability.

    Rows are binned jointly on ``attributes`` (default: label, token count,
    Flesch reading ease); every occupied bin gets a share of the budget
    proportional to its size, so the subset reproduces the pool's attribute
    mix bin by bin (stratified sampling). Inside a bin, ``within="herding"``
    (default) herds toward the bin's mean embedding [2]_: the picks' mean
    tracks the stratum's while each next pick adds what the earlier ones
    miss; ``within="nearest"`` takes the rows closest to the bin mean, a
    prototype choice in the spirit of [1]_.

    Parameters
    ----------
    attributes : sequence of str, default=("label", "token_count", "flesch_reading_ease")
        1-D feature columns (``label`` may hold any sortable values).
    within : {"herding", "nearest"}, default="herding"
        How a bin's rows are chosen. ``nearest`` (the rule before 2026-12)
        picks near-duplicates: on 3,000 SST-2 rows at 5 % its picks' mean
        distance to their nearest other pick was 0.47 (cosine) against
        random's 0.57 and herding's 0.51, and a logistic probe trained on
        them scored 0.705 against herding's 0.739 (random 0.709). Both skew
        a bin toward its longer rows, whose mean-pooled embeddings sit nearer
        the centre (mean token count 10.6-11.3 against the pool's 8.7).
    n_bins : int or sequence of int, default=4
        Bins per attribute. An int applies to every attribute but ``label``,
        which always bins by value; a sequence gives one count per attribute,
        where 0 means "one bin per distinct value". Numeric bins are
        quantile bins on mid-ranks (:func:`quantile_bins`): about
        ``n / n_bins`` rows each, equal values always in the same bin.

    Notes
    -----
    Bin ``b`` of size ``s_b`` gets ``floor(budget * s_b / n)`` rows plus one
    for the largest remainders (:func:`~dataselect.selectors.base.largest_remainder`,
    ties to the lower bin), so counts are exact, sum to ``budget`` and never
    exceed ``s_b``. Empty bins (a discrete attribute such as token count
    whose atoms skip a quantile bin) are dropped before the split; tiny bins
    whose quotient is below one row get a row only through the remainder,
    so at very small budgets rare strata may be absent (no bin is
    over-represented to force them in). Nothing is random: the seed is
    ignored (``seeded = False``); within a bin ties go to the lower row.
    Output is grouped by bin (bins in lexicographic order of their
    per-attribute bin numbers), in pick order; ``scores`` hold each pick's
    distance to its bin's mean embedding; ``info`` the bin keys, sizes,
    allocation and each numeric attribute's value range per bin.

    References
    ----------
    .. [1] B. Sorscher et al., "Beyond neural scaling laws: beating power law
       scaling via data pruning", NeurIPS 2022.
    .. [2] Y. Chen, M. Welling, A. Smola, "Super-Samples from Kernel Herding",
       UAI 2010.
    """

    requires: ClassVar[tuple[str, ...]] = ("embedding",)
    seeded: ClassVar[bool] = False
    attributes: tuple[str, ...] = ("label", "token_count", "flesch_reading_ease")
    n_bins: int | tuple[int, ...] = 4
    within: str = "herding"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check(owner, "attributes", self.attributes, is_name_list(self.attributes),
              "a non-empty list of distinct feature names")
        check(owner, "attributes", self.attributes, "embedding" not in self.attributes,
              "1-D features, not 'embedding'")
        object.__setattr__(self, "attributes", tuple(self.attributes))
        if is_int(self.n_bins):
            check(owner, "n_bins", self.n_bins, self.n_bins >= 1, "an int >= 1 or a list of ints >= 0")
        else:
            ok = isinstance(self.n_bins, list | tuple) and all(is_int(b) and b >= 0 for b in self.n_bins)
            check(owner, "n_bins", self.n_bins, ok, "an int >= 1 or a list of ints >= 0")
            check(owner, "n_bins", self.n_bins, len(self.n_bins) == len(self.attributes),
                  f"one count per attribute ({len(self.attributes)})")
            object.__setattr__(self, "n_bins", tuple(int(b) for b in self.n_bins))
        check(owner, "within", self.within, self.within in ("herding", "nearest"), "'herding' or 'nearest'")

    def required(self) -> tuple[str, ...]:
        return self.requires + self.attributes

    def bins_per_attribute(self) -> tuple[int, ...]:
        """Resolved bin count per attribute (0: by value)."""
        if isinstance(self.n_bins, tuple):
            return self.n_bins
        return tuple(0 if a == "label" else int(self.n_bins) for a in self.attributes)

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        owner = type(self).__name__
        codes, edges = [], {}
        for attr, k in zip(self.attributes, self.bins_per_attribute(), strict=True):
            col = features[attr]
            if col.ndim != 1:
                raise DataError(f"{owner}: features[{attr!r}] must be 1-D; got shape {col.shape}")
            if k == 0:
                codes.append(np.unique(col, return_inverse=True)[1])
                continue
            if col.dtype.kind not in "biuf":
                raise DataError(f"{owner}: features[{attr!r}] needs n_bins=0 (by value); "
                                f"quantile bins need numbers, got dtype {col.dtype}")
            code = quantile_bins(col, k)
            edges[attr] = [[float(col[code == j].min()), float(col[code == j].max())]
                           for j in np.unique(code)]
            codes.append(code)
        keys, bin_of = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
        bin_of = bin_of.reshape(-1)
        sizes = np.bincount(bin_of, minlength=len(keys))
        shares = largest_remainder(sizes, budget)
        x = features["embedding"].astype(np.float64)
        picks, dists = [], []
        for b in np.flatnonzero(shares):
            rows = np.flatnonzero(bin_of == b)
            d = np.linalg.norm(x[rows] - x[rows].mean(axis=0), axis=1)
            if self.within == "herding":
                take = herding(x[rows], int(shares[b]))[0]
            else:
                take = np.lexsort((rows, d))[: shares[b]]
            picks.append(rows[take])
            dists.append(d[take])
        return Selection(np.concatenate(picks), np.concatenate(dists), {
            "attributes": list(self.attributes),
            "bins": [list(map(int, k)) for k in keys],
            "bin_sizes": sizes.tolist(),
            "allocation": shares.tolist(),
            "ranges": edges,
        })


def quantile_bins(values: np.ndarray, k: int) -> np.ndarray:
    """Bin ``0..k-1`` of each value by its mid-rank quantile.

    ``q = (average rank - 1/2) / n`` in (0, 1); bin ``floor(k q)``. Equal
    values share a rank, hence a bin: an atom holding many rows (token count
    5, MATTR 1.0 of short texts) fills the bin its middle falls in and the
    other values still spread over the other bins, where edge-based quantile
    bins with repeated edges would put every row on one side.
    """
    q = (rankdata(values, method="average") - 0.5) / len(values)
    return np.minimum((q * k).astype(np.int64), k - 1)
