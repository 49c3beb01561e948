"""Diversity over meaning and wording; deterministic coverage of text attributes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.stats import rankdata

from dataselect.errors import DataError
from dataselect.selectors.base import (
    Selection,
    Selector,
    check,
    is_int,
    is_real,
    largest_remainder,
)
from dataselect.selectors.kcenter import kcenter_greedy
from dataselect.selectors.registry import register

__all__ = ["SemanticLexical", "StratifiedCoreset", "joint_space", "quantile_bins"]


def _names(value: object) -> bool:
    return (isinstance(value, list | tuple) and len(value) > 0
            and all(isinstance(v, str) and v for v in value) and len(set(value)) == len(value))


@register("semantic_lexical")
@dataclass(frozen=True)
class SemanticLexical(Selector):
    """Greedy k-center on encoder embeddings joined with lexical-diversity features.

    Covers the pool in meaning (sentence embeddings) and in wording (MATTR
    [3]_, MTLD [4]_ from the feature store) at once: a subset that spans the
    embedding space can still be lexically uniform (all short, repetitive
    phrasings); weighting in lexical diversity spreads the picks over both.
    Selection is farthest-point k-center [1]_ [2]_ on the joint space,
    through :func:`~dataselect.selectors.kcenter.kcenter_greedy`.

    Parameters
    ----------
    lexical_weight : float, default=0.3
        ``w`` in [0, 1]: the share of the expected squared distance between
        two random rows that comes from the lexical block (see Notes).
        0 is exactly ``kcenter`` on the embeddings (same ``metric``).
    lexical : sequence of str, default=("mattr", "mtld")
        1-D feature columns forming the lexical block.
    metric : {"euclidean", "cosine"}, default="cosine"
        For the embedding block: ``cosine`` L2-normalises rows first.

    Notes
    -----
    Scaling. The two blocks have unrelated units (MiniLM coordinates; a
    ratio in [0, 1]; MTLD in words, heavy-tailed), so each is brought to
    total variance 1 before weighting:

    * embeddings (after optional L2 normalisation) are divided by
      ``sqrt(sum_j var_j)``;
    * each lexical column is replaced by its mid-rank quantile
      ``(rank - 1/2) / n`` (average rank for ties), standardised, and the
      block divided by ``sqrt(m)`` for ``m`` columns. Ranks, not z-scores:
      k-center goes for the farthest rows first, and a z-scored heavy tail
      (MTLD of short phrases) would spend the budget on a few outliers;
      constant columns contribute zero.

    The joint row is ``[sqrt(1 - w) * e, sqrt(w) * l]``, so
    ``||a - b||^2 = (1 - w) d_e^2 + w d_l^2`` and both normalised blocks have
    ``E||a - b||^2 = 2``: ``w`` is the lexical share of the distance.
    ``scores`` and ``info["radius"]`` are joint-space distances (for ``w = 0``
    Euclidean distances of the, possibly normalised, embeddings). The first
    pick is drawn with the seed, as in ``kcenter``; as there, the picks at a
    smaller budget are a prefix (``prefix_consistent``).

    References
    ----------
    .. [1] T. Gonzalez, "Clustering to minimize the maximum intercluster
       distance", Theor. Comput. Sci. 38, 1985.
    .. [2] O. Sener, S. Savarese, "Active Learning for Convolutional Neural
       Networks: A Core-Set Approach", ICLR 2018.
    .. [3] M. A. Covington, J. D. McFall, "Cutting the Gordian Knot: The
       Moving-Average Type-Token Ratio (MATTR)", J. Quant. Linguistics 17(2), 2010.
    .. [4] P. M. McCarthy, S. Jarvis, "MTLD, vocd-D, and HD-D: A validation
       study of sophisticated approaches to lexical diversity assessment",
       Behavior Research Methods 42(2), 2010.
    """

    requires: ClassVar[tuple[str, ...]] = ("embedding",)
    prefix_consistent: ClassVar[bool] = True
    lexical_weight: float = 0.3
    lexical: tuple[str, ...] = ("mattr", "mtld")
    metric: str = "cosine"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check(owner, "lexical_weight", self.lexical_weight,
              is_real(self.lexical_weight) and 0 <= self.lexical_weight <= 1, "a number in [0, 1]")
        check(owner, "lexical", self.lexical, _names(self.lexical),
              "a non-empty list of distinct feature names")
        check(owner, "lexical", self.lexical, "embedding" not in self.lexical,
              "1-D features, not 'embedding'")
        check(owner, "metric", self.metric, self.metric in ("euclidean", "cosine"),
              "'euclidean' or 'cosine'")
        object.__setattr__(self, "lexical", tuple(self.lexical))

    def required(self) -> tuple[str, ...]:
        return self.requires + (self.lexical if self.lexical_weight > 0 else ())

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        lexical = [features[c] for c in self.lexical] if self.lexical_weight > 0 else []
        for name, col in zip(self.lexical, lexical, strict=False):
            if col.ndim != 1:
                raise DataError(f"{type(self).__name__}: features[{name!r}] must be 1-D; "
                                f"got shape {col.shape}")
        x = joint_space(features["embedding"], lexical,
                        float(self.lexical_weight), self.metric, type(self).__name__)
        picks, scores, radius = kcenter_greedy(x, budget, [int(rng.integers(n))])
        return Selection(picks, scores, {"radius": float(radius),
                                         "lexical_weight": float(self.lexical_weight)})

    def _prefix_info(self, selection: Selection, budget: int) -> dict[str, Any]:
        # kcenter_greedy's radius at budget b is the score of pick b + 1.
        return {**selection.info, "radius": float(selection.scores[budget])}  # type: ignore[index]


def joint_space(
    emb: np.ndarray, lexical: list[np.ndarray], weight: float, metric: str, owner: str
) -> np.ndarray:
    """The weighted embedding + lexical rows k-center runs on (see :class:`SemanticLexical`).

    With ``weight == 0`` this is the embedding array as ``kcenter`` would
    see it (same dtype, no rescaling), so the picks are identical.
    """
    x = emb if emb.dtype in (np.float32, np.float64) else emb.astype(np.float64)
    if metric == "cosine":
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        if (zero := np.flatnonzero(norm[:, 0] == 0)).size:
            raise DataError(f"{owner}: cosine metric needs non-zero embeddings; "
                            f"{zero.size} row(s) are zero, first at row {zero[0]}")
        x = x / norm
    if weight == 0:
        return x
    # sum_j var_j = mean ||x||^2 - ||mean x||^2, without an (n, d) float64 temporary.
    mean = x.mean(axis=0, dtype=np.float64)
    total_var = float(np.einsum("ij,ij->i", x, x, dtype=np.float64).mean() - mean @ mean)
    scale = np.sqrt(1 - weight) / np.sqrt(total_var) if total_var > 0 else 0.0
    cols = []
    for col in lexical:
        q = (rankdata(col, method="average") - 0.5) / len(col)
        sd = q.std()
        cols.append((q - q.mean()) / sd if sd > 0 else np.zeros_like(q))
    lex = np.stack(cols, axis=1) * np.sqrt(weight / len(cols))
    out = np.empty((len(x), x.shape[1] + len(cols)), dtype=x.dtype)
    np.multiply(x, scale, out=out[:, : x.shape[1]], casting="same_kind")
    out[:, x.shape[1] :] = lex
    return out


@register("stratified_coreset")
@dataclass(frozen=True)
class StratifiedCoreset(Selector):
    """Deterministic coverage of text attributes: bins over label × length × readability.

    Rows are binned jointly on ``attributes`` (default: label, token count,
    Flesch reading ease); every occupied bin gets a share of the budget
    proportional to its size, and inside a bin the rows closest to the
    bin's mean embedding are taken, so the subset reproduces the pool's
    attribute mix (stratified sampling) with the most typical row of each
    stratum, a prototype choice in the spirit of [1]_ and of herding /
    k-medoid core-sets.

    Parameters
    ----------
    attributes : sequence of str, default=("label", "token_count", "flesch_reading_ease")
        1-D feature columns (``label`` may hold any sortable values).
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
    per-attribute bin numbers), nearest first; ``scores`` hold each pick's
    distance to its bin's mean embedding; ``info`` the bin keys, sizes,
    allocation and each numeric attribute's value range per bin.

    References
    ----------
    .. [1] B. Sorscher et al., "Beyond neural scaling laws: beating power law
       scaling via data pruning", NeurIPS 2022.
    """

    requires: ClassVar[tuple[str, ...]] = ("embedding",)
    seeded: ClassVar[bool] = False
    attributes: tuple[str, ...] = ("label", "token_count", "flesch_reading_ease")
    n_bins: int | tuple[int, ...] = 4

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check(owner, "attributes", self.attributes, _names(self.attributes),
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
            near = np.lexsort((rows, d))[: shares[b]]
            picks.append(rows[near])
            dists.append(d[near])
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
