"""``semantic_lexical``: k-center on embeddings plus rank-scaled lexical diversity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.stats import rankdata

from dataselect.core.errors import DataError
from dataselect.selectors.base import (
    Selection,
    Selector,
    check,
    is_name_list,
    is_real,
)
from dataselect.selectors.kcenter import kcenter_greedy
from dataselect.selectors.registry import register

__all__ = ["SemanticLexical", "joint_space"]



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
        check(owner, "lexical", self.lexical, is_name_list(self.lexical),
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
