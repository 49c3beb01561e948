"""``random``: uniform sample without replacement, the baseline every selector must beat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dataselect.selectors.base import Selection, Selector
from dataselect.selectors.registry import register

__all__ = ["RandomSelector"]


@register("random")
@dataclass(frozen=True)
class RandomSelector(Selector):
    """Uniform sample without replacement.

    Indices come in the sampled order; the generator is
    ``np.random.default_rng(seed)``, so a seed fixes the subset everywhere.
    Not ``prefix_consistent``: numpy's draw without replacement gives a
    smaller sample that is not the start of a larger one.
    """

    requires: ClassVar[tuple[str, ...]] = ()

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        return Selection(rng.choice(n, size=budget, replace=False))
