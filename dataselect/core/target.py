"""The target: texts of the distribution a classifier is judged on.

Target-aware selectors (``dsir``, ``density_ratio``, ``gradient_match``,
``metric_match``) choose pool rows for this distribution instead of the
pool's own. Three sources (``target:`` in the study config): a file of
texts, a split of the dataset, or whole sentences held out of the pool by
:mod:`dataselect.core.holdout`. Whatever the source, the target is a frame of
``id``, ``text`` and ``label`` (-1 where no label is known) and goes
through the same feature store as the pool.

A target is *transductive* when it shares texts with the eval set, found by
text under the holdout rule's key (:func:`~dataselect.core.holdout.match_key`),
not by the source's name: the eval split, a file that holds eval sentences,
or the train split before its held-out eval sentences are dropped (the
loader drops them). The labels a study grants its target-aware selectors
(``target.labelled``) are counted apart when they are eval rows' labels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dataselect.core.config import TargetConfig
from dataselect.core.errors import DataError
from dataselect.core.holdout import match_key
from dataselect.core.readers import FORMATS, read_file

log = logging.getLogger(__name__)

NO_LABEL = -1
"""``label`` of a target row whose class is unknown."""


@dataclass(frozen=True)
class TargetSet:
    """The target rows and what the report must say about them."""

    frame: pd.DataFrame
    """``id``, ``text``, ``label`` (``NO_LABEL`` when unknown)."""
    source: str
    """``holdout``, ``split:<name>`` or ``path:<file>``."""
    transductive: bool
    """True when a target text is also an eval row's (``n_in_eval > 0``)."""
    n_in_pool: int
    """Target rows whose text is also a pool row's."""
    info: dict[str, Any] = field(default_factory=dict)
    n_in_eval: int = 0
    """Target rows whose text is also an eval row's."""
    eval_labels: int = 0
    """Labels granted to the selectors (``target.labelled``) that belong to target rows
    whose text is an eval row's: eval labels a selector learns from."""

    @property
    def labelled(self) -> bool:
        return bool((self.frame["label"] != NO_LABEL).any())

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for ``study.json`` and the report."""
        words = self.frame["text"].str.split().str.len()
        return {"source": self.source, "transductive": self.transductive, "n_rows": len(self.frame),
                "n_in_pool": self.n_in_pool, "n_in_eval": self.n_in_eval, "eval_labels": self.eval_labels,
                "labelled": self.labelled, "mean_words": float(words.mean()), **self.info}


def target_frame(ids: np.ndarray, texts: pd.Series, labels: np.ndarray | None = None) -> pd.DataFrame:
    """A target frame, checked: non-empty texts, unique ids."""
    texts = texts.astype(str).reset_index(drop=True)
    if len(texts) == 0:
        raise DataError("target: no rows")
    empty = texts.str.strip() == ""
    if empty.any():
        raise DataError(f"target: empty text at row {int(np.flatnonzero(empty.to_numpy())[0])} "
                        f"({int(empty.sum())} empty rows)")
    lab = np.full(len(texts), NO_LABEL, dtype=np.int64) if labels is None else np.asarray(labels, np.int64)
    return pd.DataFrame({"id": np.asarray(ids, np.int64), "text": texts.to_numpy(), "label": lab})


def read_target_path(cfg: TargetConfig, text_column: str, to_int: dict[str, int]) -> pd.DataFrame:
    """The rows of a ``target.path`` file (or the one data file of a folder)."""
    path = Path(cfg.path).expanduser()  # type: ignore[arg-type]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in FORMATS)
        if len(files) != 1:
            raise DataError(f"target.path: folder {path} must hold one TSV/CSV/JSONL/parquet file; "
                            f"found {[p.name for p in files]}")
        path = files[0]
    if not path.is_file():
        raise DataError(f"target.path: path does not exist: {path}")
    names = [text_column, *([cfg.label_column] if cfg.label_column else [])]
    df, _ = read_file(path, cfg.format, cfg.header, names, "target.path")
    for col, key in ((text_column, "text_column"), (cfg.label_column, "label_column")):
        if col is not None and col not in df.columns:
            raise DataError(f"target.{key}: column {col!r} not in {path.name}; columns: {list(df.columns)[:10]}")
    labels = None
    if cfg.label_column is not None:
        keys = df[cfg.label_column].astype(str).str.strip()
        bad = ~keys.isin(list(to_int))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"target.label_column: {path.name} row {i}: label {keys.iloc[i]!r} is not "
                            f"one of the dataset's classes {sorted(to_int)[:10]}")
        labels = keys.map(to_int).to_numpy(np.int64)
    text = df[text_column]
    if text.isna().any():
        i = int(np.flatnonzero(text.isna().to_numpy())[0])
        raise DataError(f"target.text_column: {path.name} row {i}: empty text")
    return target_frame(np.arange(len(df)), text, labels)


def in_texts(target: pd.DataFrame, other: pd.DataFrame, match: str = "punctuation") -> np.ndarray:
    """``(m,) bool``: target rows whose text is also one of ``other``'s, under the holdout key ``match``."""
    keys = {match_key(t, match) for t in other["text"]}
    return np.fromiter((match_key(t, match) in keys for t in target["text"]), dtype=bool, count=len(target))


def count_in_pool(target: pd.DataFrame, pool: pd.DataFrame, match: str = "punctuation") -> int:
    """Target rows whose text is also a pool row's (under the holdout key); warned about."""
    n = int(in_texts(target, pool, match).sum())
    if n:
        log.warning("target: %d of %d target texts also occur in the pool: a selector that copies "
                    "the target may pick them", n, len(target))
    return n


def granted_labels(frame: pd.DataFrame, labelled: int) -> np.ndarray:
    """``(m,) bool``: the target rows whose labels selectors may use (``target.labelled``).

    The first ``labelled`` of the rows with a known label in a permutation drawn
    with seed 0, so every selector and every study on this target sees the same slice.
    """
    keep = np.zeros(len(frame), dtype=bool)
    known = np.flatnonzero(frame["label"].to_numpy() != NO_LABEL)
    keep[np.random.default_rng(0).permutation(known)[:labelled]] = True
    return keep
