"""``wordpiece_ratio``: subword tokens per word (rarity): keep high, low or a band."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dataselect.selectors.base import Selection, Selector
from dataselect.selectors.registry import register
from dataselect.selectors.score_band import check_keep, keep_by_score

__all__ = ["WordpieceRatio"]


@register("wordpiece_ratio")
@dataclass(frozen=True)
class WordpieceRatio(Selector):
    """Keep rows by subword tokens per word (``subword_ratio``), a rarity signal.

    Rare words, names, typos and foreign words split into several subword
    pieces, so a high ratio marks unusual text (tokenizer "fertility", Rust et
    al., ACL 2021); a low ratio marks plain, frequent vocabulary. The feature
    comes from :mod:`dataselect.features.tokenizer_stats` (always computed).

    Parameters
    ----------
    keep : {"high", "low", "band"}, default="band"
        Largest ratios, smallest, or random within the quantile band.
    q_low, q_high : float, default=0.1, 0.9
        Quantile band for ``keep="band"`` (ignored otherwise).

    Notes
    -----
    ``scores`` as in :func:`keep_by_score` (higher = more preferred). With
    ``keep`` high/low the picks ignore the seed.
    """

    requires: ClassVar[tuple[str, ...]] = ("subword_ratio",)
    keep: str = "band"
    q_low: float = 0.1
    q_high: float = 0.9

    def __post_init__(self) -> None:
        check_keep(type(self).__name__, self.keep, self.q_low, self.q_high)

    @property
    def seeded(self) -> bool:  # type: ignore[override]
        return self.keep == "band"

    @property
    def prefix_consistent(self) -> bool:  # type: ignore[override]
        return self.keep != "band"

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        return keep_by_score(type(self).__name__, features["subword_ratio"], budget, rng,
                             self.keep, self.q_low, self.q_high)
