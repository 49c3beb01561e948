"""LM-judge filter: exclude rows a causal LM calls ambiguous or sarcastic."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataselect.core.errors import InsufficientRowsError
from dataselect.selectors.base import Selection, Selector, check, is_real
from dataselect.selectors.registry import register

__all__ = ["LLMJudge"]


@register("llm_judge")
@dataclass(frozen=True)
class LLMJudge(Selector):
    """Drop rows the LM judge flags, fill the budget from the rest.

    The ``llm_judge`` feature family (:mod:`dataselect.features.judge`) asks a
    causal LM (default the configured Qwen3) whether each text is ambiguous
    and whether it is sarcastic, and stores the answer log-odds
    ``judge_<flag> = log p(Yes) - log p(No)``, read from one forward pass, no
    sampling. Ambiguous or sarcastic sentences are where sentiment labels
    are least reliable and least learnable from surface cues: LM
    annotators are used this way to filter training data (e.g. Gilardi et
    al., PNAS 2023; Wettig et al., "QuRating", ICML 2024), and sarcasm is a
    documented failure mode of sentiment classifiers (Riloff et al., EMNLP
    2013).

    Parameters
    ----------
    ambiguous_max : float or None, default=0.0
        Flag a row when ``judge_ambiguous > ambiguous_max`` (0.0: the LM
        prefers "Yes"; larger: only confident yeses). None: ignore this flag.
    sarcastic_max : float or None, default=0.0
        Same for ``judge_sarcastic``.
    fill : {"random", "score"}, default="random"
        Among unflagged rows: uniformly at random, or the least suspicious
        first (smallest ``max`` of the used log-odds; ties to the lower row).

    Raises
    ------
    InsufficientRowsError
        At ``select`` time, when fewer than ``budget`` rows are unflagged.

    Notes
    -----
    ``scores`` hold minus the largest used log-odds (higher = less
    suspicious = more preferred). Thresholds are in nats; ``sigmoid(t)`` is
    the matching P(Yes). Needs ``features.llm_judge: true``.
    """

    ambiguous_max: float | None = 0.0
    sarcastic_max: float | None = 0.0
    fill: str = "random"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for attr in ("ambiguous_max", "sarcastic_max"):
            value = getattr(self, attr)
            check(owner, attr, value, value is None or is_real(value), "None or a finite number")
        check(owner, "ambiguous_max", self.ambiguous_max,
              self.ambiguous_max is not None or self.sarcastic_max is not None,
              "a number when sarcastic_max is None (at least one flag must be used)")
        check(owner, "fill", self.fill, self.fill in ("random", "score"), "'random' or 'score'")

    @property
    def seeded(self) -> bool:  # type: ignore[override]
        return self.fill == "random"

    @property
    def prefix_consistent(self) -> bool:  # type: ignore[override]
        return self.fill == "score"

    def _flags(self) -> list[tuple[str, float]]:
        return [(f"judge_{k}", float(t)) for k, t in
                (("ambiguous", self.ambiguous_max), ("sarcastic", self.sarcastic_max)) if t is not None]

    def required(self) -> tuple[str, ...]:
        return tuple(col for col, _ in self._flags())

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        flags = self._flags()
        flagged = np.zeros(n, dtype=bool)
        info: dict[str, int] = {}
        for col, t in flags:
            hit = features[col] > t
            info[f"n_{col}"] = int(hit.sum())
            flagged |= hit
        suspicion = np.max([features[col] for col, _ in flags], axis=0)
        clean = np.flatnonzero(~flagged)
        if len(clean) < budget:
            raise InsufficientRowsError(
                f"{type(self).__name__}: only {len(clean)} of {n} rows are not flagged "
                f"({', '.join(f'{c} > {t:g}' for c, t in flags)}), fewer than budget={budget}; "
                f"raise the thresholds or lower the budget"
            )
        if self.fill == "random":
            picks = rng.choice(clean, size=budget, replace=False)
        else:
            picks = clean[np.lexsort((clean, suspicion[clean]))[:budget]]
        return Selection(picks, -suspicion[picks], {"n_flagged": int(flagged.sum()), **info})
