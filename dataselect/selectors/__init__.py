"""Subset selectors: ``get_selector(name, **params).select(features, budget, seed)``.

Importing this package fills the registry. A selector's module is named by its registry
key (`dataselect/selectors/kcenter.py` holds `kcenter`); the others hold what
several share (`base`, `registry`, `crossfit`, `score_band`, `composite`,
`partitioning`...).
"""

from dataselect.selectors import (  # noqa: F401  (importing fills the registry)
    ccs,
    cleanlab,
    consistency,
    d2,
    density_ratio,
    dsir,
    el2n,
    entropy,
    forgetting,
    full,
    fusion,
    gradient_match,
    grand,
    herding,
    kcenter,
    kmeans,
    llm_judge,
    metric_match,
    partitioned,
    perplexity,
    pipeline,
    probcover,
    pseudo_perplexity,
    random,
    self_filter,
    semantic_lexical,
    stratified_coreset,
    typiclust,
    wordpiece_ratio,
)
from dataselect.selectors.base import (
    FeatureError,
    InvalidParameterError,
    Selection,
    Selector,
    check,
)
from dataselect.selectors.registry import UnknownSelectorError, available, get_selector, register
from dataselect.selectors.stratify import PerClass

__all__ = [
    "FeatureError",
    "InvalidParameterError",
    "PerClass",
    "Selection",
    "Selector",
    "UnknownSelectorError",
    "available",
    "check",
    "get_selector",
    "register",
]
