"""Subset selectors: ``get_selector(name, **params).select(features, budget, seed)``.

Importing this package fills the registry; each module holds one family.
"""

from dataselect.selectors import (  # noqa: F401  (importing fills the registry)
    baselines,
    confident,
    consistency,
    density_ratio,
    diversity,
    dsir,
    gradient_match,
    herding,
    hybrid,
    importance,
    judge,
    kcenter,
    kmeans,
    lowbudget,
    metric_match,
    perplexity,
    pruning,
    selffilter,
    uncertainty,
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
