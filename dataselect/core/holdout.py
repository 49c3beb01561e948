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

Texts are compared with whitespace runs collapsed to one space (SST-2 is
tokenised by spaces already). The same rule serves a larger eval set
(``dataset.eval_holdout``) and a target picture of sentences that never
touches the eval texts (``target: {holdout: ...}``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["normalise", "phrase_rows", "split_holdout", "whole_rows"]


def normalise(text: str) -> str:
    """Whitespace runs collapsed to one space, ends stripped."""
    return " ".join(text.split())


def _spans(tokens: Sequence[str]) -> Iterable[str]:
    n = len(tokens)
    for i in range(n):
        for j in range(i + 1, n + 1):
            yield " ".join(tokens[i:j])


def whole_rows(texts: Sequence[str]) -> np.ndarray:
    """``(n,) bool``: rows whose text is no proper token span of another row's.

    A row equal to another (a repeated text) is whole when that text is.
    Cost: one set lookup per token span of each distinct text (O(sum of
    len^2)); ~2 s for SST-2's 67k rows.
    """
    norm = [normalise(t) for t in texts]
    rows = set(norm)
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
    return np.fromiter((s not in inner for s in norm), dtype=bool, count=len(norm))


def phrase_rows(texts: Sequence[str], sentences: Iterable[str]) -> np.ndarray:
    """``(n,) bool``: rows of ``texts`` equal to a token span of any of ``sentences`` (themselves included)."""
    spans: set[str] = set()
    for s in sentences:
        spans.update(_spans(normalise(s).split(" ")))
    return np.fromiter((normalise(t) in spans for t in texts), dtype=bool, count=len(texts))


def split_holdout(texts: Sequence[str], draws: Sequence[tuple[int, int]],
                  ) -> tuple[list[np.ndarray], np.ndarray]:
    """Hold out whole sentences in one or more disjoint draws, and their phrases.

    Parameters
    ----------
    texts : sequence of str, length n
        The pool's texts (row order is kept).
    draws : sequence of (n_sentences, seed)
        Each draw takes ``n_sentences`` distinct whole sentences, seeded, from
        those no earlier draw took (first the eval holdout, then a target).

    Returns
    -------
    held : list of ndarray of int64
        Per draw, the positions of its sentences (one row per distinct text),
        in ascending order.
    removed : ndarray of bool, shape (n,)
        Rows out of the pool: every row that is a token span of a held-out
        sentence (the sentences themselves and their repeats included).

    Raises
    ------
    ValueError
        The draws ask for more distinct whole sentences than the pool has.
    """
    norm = [normalise(t) for t in texts]
    whole = np.flatnonzero(whole_rows(norm))
    # One candidate per distinct text, the first row that holds it.
    _, first = np.unique(np.asarray([norm[i] for i in whole], dtype=object), return_index=True)
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
    return held, phrase_rows(norm, sentences)
