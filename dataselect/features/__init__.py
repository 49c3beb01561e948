"""Per-example features for data selection, cached as parquet shards.

One module per family (:mod:`~dataselect.features.embeddings`,
:mod:`~dataselect.features.perplexity`,
:mod:`~dataselect.features.pseudo_perplexity`,
:mod:`~dataselect.features.text_metrics`,
:mod:`~dataselect.features.tokenizer_stats`), each with a plain function and
a Ray Data UDF class; :func:`compute_features` runs them through Ray Data
into a :class:`FeatureStore` and returns a :class:`FeatureTable` that
selectors consume directly (``features["embedding"]``, ``features["label"]``).
"""

from dataselect.features.families import FAMILIES, default_families
from dataselect.features.runner import compute_features
from dataselect.features.store import FeatureStore, FeatureTable

__all__ = ["FAMILIES", "FeatureStore", "FeatureTable", "compute_features", "default_families"]
