"""``pipeline``: sequential stages (quality filter → diversity → importance), each keeping a share of the rows before it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dataselect.core.errors import InsufficientStageError
from dataselect.selectors.base import (
    Selection,
    check,
    is_int,
    is_real,
    take_rows,
)
from dataselect.selectors.composite import Composite, build_members
from dataselect.selectors.registry import register

__all__ = ['InsufficientStageError', 'Pipeline']


@register("pipeline")
@dataclass(frozen=True)
class Pipeline(Composite):
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
            - {name: perplexity, params: {q_low: 0.05, q_high: 0.95}, keep: 0.6}
            - {name: semantic_lexical, params: {lexical_weight: 0.3}, keep: 0.5}
            - {name: el2n, params: {keep: lowest}}
    """

    stages: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        specs, members = build_members("Pipeline", "stages", self.stages, {"keep": None})
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


