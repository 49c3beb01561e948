"""``full``: the whole pool, the reference the report compares every subset to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dataselect.selectors.base import Selection, Selector
from dataselect.selectors.registry import register

__all__ = ["FullSelector"]


@register("full")
@dataclass(frozen=True)
class FullSelector(Selector):
    """The first ``budget`` rows in table order (``budget = n``: the whole pool).

    The reference the report compares every subset to; the seed is ignored.
    """

    requires: ClassVar[tuple[str, ...]] = ()
    seeded: ClassVar[bool] = False
    prefix_consistent: ClassVar[bool] = True

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        return Selection(np.arange(budget, dtype=np.int64))
