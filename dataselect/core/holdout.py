"""Hold whole sentences out of a phrase-level pool without leaking their phrases.

SST-2's train split is the parse-tree phrases of its sentences: a sentence
appears as one row and each of its phrases as rows of their own (67,349
rows; 6,886 of them are whole sentences, i.e. no proper phrase of a longer
row). Moving a sentence to the eval set is not enough: its phrases, often
with the same sentiment, would stay in the pool and leak the answer. The
rule here takes out, with every held-out sentence, every pool row that is a
token span of it (a contiguous run of its whitespace tokens: "a gorgeous
film" of "it is a gorgeous film ."), so no phrase of a held-out sentence is
ever trained on.

Texts are compared under a key (``match``):

* ``whitespace``: whitespace runs collapsed to one space (SST-2 is tokenised
  by spaces already). The rule before ``dataset.holdout_match`` existed.
* ``punctuation`` (the default): also every character that is not a letter or
  digit is dropped from each token, and tokens left empty are dropped. SST
  tokenises some phrases twice ("etc ." and "etc. .", "smart-aleck" beside
  "smartaleck", a leading `` quote or not), so under the whitespace key a
  held-out sentence kept a near-copy in the pool. Every row the whitespace
  rule removes this rule removes too (a row of punctuation only is compared
  by its whitespace key); on SST-2 with ``experiments/target.yaml``'s holdout
  (3,000 eval + 1,000 target sentences) it takes 27,050 pool rows where the
  whitespace rule takes 27,192 (README, "Holdout rule").

The same rule serves a larger eval set (``dataset.eval_holdout``), a
validation set apart from it (``dataset.validation_holdout``) and a target
picture of sentences that never touches the eval texts (``target: {holdout: ...}``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["MATCH_RULES", "match_key", "normalise", "phrase_rows", "split_holdout", "whole_rows"]

MATCH_RULES = ("whitespace", "punctuation")
"""The text keys the holdout rule compares under (``dataset.holdout_match``)."""

_NOT_ALNUM = re.compile(r"[\W_]+")  # \w is str.isalnum() plus '_'


def normalise(text: str) -> str:
    """Whitespace runs collapsed to one space, ends stripped."""
    return " ".join(text.split())


def match_key(text: str, match: str = "punctuation") -> str:
    """``text`` as the holdout rule compares it (see the module docstring); tokens joined by one space.

    ``punctuation``: "etc. ." and "etc ." are both ``etc``; a text of punctuation only is ``""``.
    """
    if match == "whitespace":
        return normalise(text)
    if match != "punctuation":
        raise ValueError(f"match must be one of {list(MATCH_RULES)}; got {match!r}")
    return " ".join(t for t in (_NOT_ALNUM.sub("", tok) for tok in text.split()) if t)


def _spans(tokens: Sequence[str]) -> Iterable[str]:
    n = len(tokens)
    for i in range(n):
        for j in range(i + 1, n + 1):
            yield " ".join(tokens[i:j])


def _whole(keys: Sequence[str]) -> np.ndarray:
    """Rows whose key is non-empty and no proper token span of another row's key."""
    rows = {k for k in keys if k}
    inner: set[str] = set()
    for s in rows:
        tokens = s.split(" ")
        n = len(tokens)
        for i in range(n):
            for j in range(i + 1, n + 1):
                if j - i < n:
                    span = " ".join(tokens[i:j])
                    if span in rows:
                        inner.add(span)
    return np.fromiter((bool(k) and k not in inner for k in keys), dtype=bool, count=len(keys))


def whole_rows(texts: Sequence[str], match: str = "punctuation") -> np.ndarray:
    """``(n,) bool``: rows whose text is no proper token span of another row's.

    A row equal to another (a repeated text) is whole when that text is.
    Under ``punctuation`` a row must be whole under both keys: of "x y ." and
    "x y" (one key) only the first is. Cost: one set lookup per token span of
    each distinct text (O(sum of len^2)); ~2 s for SST-2's 67k rows per key.
    """
    whole = _whole([normalise(t) for t in texts])
    if match == "whitespace":
        return whole
    return whole & _whole([match_key(t, match) for t in texts])


def phrase_rows(texts: Sequence[str], sentences: Iterable[str], match: str = "punctuation") -> np.ndarray:
    """``(n,) bool``: rows of ``texts`` equal to a token span of any of ``sentences`` (themselves included).

    Under ``punctuation``, a row is one when its key is a token span of a
    sentence's key, or (a row of punctuation only) when its whitespace key is.
    """
    sentences = list(sentences)

    def spans_of(keys: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for k in keys:
            if k:
                out.update(_spans(k.split(" ")))
        return out

    if match == "whitespace":
        spans = spans_of(normalise(s) for s in sentences)
        return np.fromiter((normalise(t) in spans for t in texts), dtype=bool, count=len(texts))
    keyed = spans_of(match_key(s, match) for s in sentences)
    keys = [match_key(t, match) for t in texts]
    out = np.fromiter((k in keyed for k in keys), dtype=bool, count=len(keys))
    # A row whose whitespace span matches has a matching key too, unless its key is empty.
    if bare := [i for i, k in enumerate(keys) if not k]:
        spans = spans_of(normalise(s) for s in sentences)
        out[bare] = [normalise(texts[i]) in spans for i in bare]
    return out


def split_holdout(texts: Sequence[str], draws: Sequence[tuple[int, int]], match: str = "punctuation",
                  ) -> tuple[list[np.ndarray], np.ndarray]:
    """Hold out whole sentences in one or more disjoint draws, and their phrases.

    Parameters
    ----------
    texts : sequence of str, length n
        The pool's texts (row order is kept).
    draws : sequence of (n_sentences, seed)
        Each draw takes ``n_sentences`` distinct whole sentences, seeded, from
        those no earlier draw took (first the eval holdout, then a target,
        then a validation holdout).
    match : {"punctuation", "whitespace"}
        The text key (module docstring): which rows are one sentence, and
        which rows are its phrases.

    Returns
    -------
    held : list of ndarray of int64
        Per draw, the positions of its sentences (one row per distinct key),
        in ascending order.
    removed : ndarray of bool, shape (n,)
        Rows out of the pool: every row that is a token span of a held-out
        sentence (the sentences themselves and their repeats included).

    Raises
    ------
    ValueError
        The draws ask for more distinct whole sentences than the pool has.
    """
    if match not in MATCH_RULES:
        raise ValueError(f"match must be one of {list(MATCH_RULES)}; got {match!r}")
    norm = [normalise(t) for t in texts]
    keys = norm if match == "whitespace" else [match_key(t, match) for t in norm]
    whole = np.flatnonzero(whole_rows(norm, match))
    # One candidate per distinct key, the first row that holds it.
    _, first = np.unique(np.asarray([keys[i] for i in whole], dtype=object), return_index=True)
    candidates = np.sort(whole[first])
    want = sum(k for k, _ in draws)
    if want > len(candidates):
        raise ValueError(f"{want} held-out sentences asked for, but the pool has only "
                         f"{len(candidates)} distinct whole sentences")
    taken = np.zeros(len(candidates), dtype=bool)
    held = []
    for k, seed in draws:
        free = np.flatnonzero(~taken)
        pick = np.sort(np.random.default_rng(seed).choice(free, size=k, replace=False))
        taken[pick] = True
        held.append(candidates[pick].astype(np.int64))
    sentences = [norm[i] for h in held for i in h]
    return held, phrase_rows(norm, sentences, match)
