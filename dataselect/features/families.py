"""The feature families by name: how to build each one's spec, and how to check its stored values.

One table that the runner (which computes families) and the store (which
checks them on read) both use, so neither imports the other for it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dataselect.core.config import FeaturesConfig
from dataselect.features import (
    eda,
    embeddings,
    judge,
    ngrams,
    perplexity,
    pseudo_perplexity,
    text_metrics,
    tokenizer_stats,
)
from dataselect.features._common import FamilySpec

__all__ = ["FAMILIES", "FAMILY_CHECKS", "default_families"]

FAMILIES: dict[str, Callable[..., FamilySpec]] = {
    "embedding": embeddings.family_spec,
    "perplexity": perplexity.family_spec,
    "pseudo_perplexity": pseudo_perplexity.family_spec,
    "text_metrics": text_metrics.family_spec,
    "subword_ratio": tokenizer_stats.family_spec,
    "llm_judge": judge.family_spec,
    "consistency": eda.family_spec,
    "ngrams": ngrams.family_spec,
}
"""Family name -> spec builder, in computation order."""

FAMILY_CHECKS: dict[str, Callable[[dict[str, np.ndarray]], str | None]] = {
    "embedding": embeddings.no_nan(embeddings.COLUMNS[:1]),
    "perplexity": perplexity._check,
    "pseudo_perplexity": pseudo_perplexity._check,
    "text_metrics": text_metrics.no_nan(text_metrics.COLUMNS),
    "subword_ratio": tokenizer_stats.no_nan(tokenizer_stats.COLUMNS),
    "llm_judge": judge.no_nan(judge.COLUMNS),
    "consistency": eda.no_nan(eda.COLUMNS),
    "ngrams": ngrams.check,
}


def default_families(cfg: FeaturesConfig) -> set[str]:
    """Families ``cfg`` enables: embeddings and subword ratio always, the rest by switch."""
    out = {"embedding", "subword_ratio"}
    if cfg.perplexity_model is not None:
        out.add("perplexity")
    if cfg.mlm_model is not None:
        out.add("pseudo_perplexity")
    if cfg.text_metrics:
        out.add("text_metrics")
    if cfg.llm_judge:
        out.add("llm_judge")
    if cfg.consistency_variants > 0:
        out.add("consistency")
    if cfg.ngrams:
        out.add("ngrams")
    return out
