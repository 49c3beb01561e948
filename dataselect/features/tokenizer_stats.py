"""Subword fertility: encoder subword tokens per whitespace word.

A cheap rarity proxy: words outside the tokenizer's frequent vocabulary are
split into several pieces, so texts full of rare words, names, typos or
foreign words have a high ratio (cf. "fertility" in Rust et al., "How Good
is Your Tokenizer?", ACL 2021). Uses the encoder's tokenizer, without
special tokens and without truncation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dataselect.core.config import FeaturesConfig
from dataselect.features._common import FamilySpec, no_nan, text_list

COLUMNS = ("subword_ratio",)


def subword_ratio(texts: Sequence[str], tokenizer: Any) -> np.ndarray:
    """Subword tokens / whitespace words per text, (n,) float64.

    A text with no whitespace word (empty) gets 0.0.
    """
    enc = tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
    out = np.empty(len(texts), dtype=np.float64)
    for i, (t, ids) in enumerate(zip(texts, enc, strict=True)):
        out[i] = len(ids) / max(len(t.split()), 1)
    return out


class SubwordBatch:
    """Ray Data UDF: tokenizer loaded once per actor; returns ``id``, ``subword_ratio``."""

    VERSION = 1

    def __init__(self, *, model: str, **_: object) -> None:
        from dataselect.core.models import load_tokenizer

        self.tokenizer = load_tokenizer(model)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"id": np.asarray(batch["id"], dtype=np.int64),
                "subword_ratio": subword_ratio(text_list(batch), self.tokenizer)}


def family_spec(cfg: FeaturesConfig, device: str, n_threads: int | None = None) -> FamilySpec:
    """The ``subword_ratio`` family, on ``cfg.encoder``'s tokenizer."""
    return FamilySpec(
        name="subword_ratio", udf=SubwordBatch, udf_kwargs={"model": cfg.encoder}, key_settings={},
        model_ref=cfg.encoder, columns=COLUMNS, uses_model=True, batch_rows=4096,
        check_values=no_nan(COLUMNS),
    )
