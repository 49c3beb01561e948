"""Embeddings: invariant to batch size and row order; UDF equals the plain function."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dataselect.features.embeddings import EmbedBatch, embed_texts, l2_normalize


@pytest.fixture(scope="module")
def texts(sample):
    return sample["text"].tolist()[:32]


@pytest.fixture(scope="module")
def reference(minilm, texts):
    tok, model = minilm
    return embed_texts(texts, tok, model, batch_size=16)


def test_shape_dtype_and_naive_mean_pooling(minilm, texts, reference):
    tok, model = minilm
    assert reference.shape == (len(texts), model.config.hidden_size) and reference.dtype == np.float32
    # Naive: one text at a time, no padding, plain mean over all its tokens.
    for i in (0, 7, 31):
        enc = tok(texts[i], return_tensors="pt")
        with torch.no_grad():
            h = model(**enc).last_hidden_state[0]
        np.testing.assert_allclose(reference[i], h.mean(0).numpy(), atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_invariant_to_batch_size(minilm, texts, reference, batch_size):
    tok, model = minilm
    n = 12 if batch_size == 1 else len(texts)  # batch 1 = one forward per text: keep it short
    got = embed_texts(texts[:n], tok, model, batch_size=batch_size)
    np.testing.assert_allclose(got, reference[:n], atol=1e-5)


def test_invariant_to_row_order_and_sorting(minilm, texts, reference):
    tok, model = minilm
    perm = np.random.default_rng(0).permutation(len(texts))
    got = embed_texts([texts[i] for i in perm], tok, model, batch_size=16)
    np.testing.assert_allclose(got, reference[perm], atol=1e-5)
    unsorted = embed_texts(texts, tok, model, batch_size=16, sort_by_length=False)
    np.testing.assert_allclose(unsorted, reference, atol=1e-5)


def test_cls_pooling_is_first_token(minilm, texts):
    tok, model = minilm
    got = embed_texts(texts[:3], tok, model, pooling="cls")
    enc = tok(texts[1], return_tensors="pt")
    with torch.no_grad():
        h = model(**enc).last_hidden_state[0, 0]
    np.testing.assert_allclose(got[1], h.numpy(), atol=1e-5)


def test_udf_on_local_batch_equals_plain_function(texts, reference):
    udf = EmbedBatch(model="minilm", pooling="mean", normalize=True, batch_size=16)
    ids = np.arange(100, 100 + len(texts))[::-1]
    out = udf({"id": ids, "text": np.array(texts[::-1], dtype=object)})
    np.testing.assert_array_equal(out["id"], ids)
    np.testing.assert_allclose(out["embedding"], reference[::-1], atol=1e-5)
    np.testing.assert_allclose(out["embedding_norm"], l2_normalize(reference[::-1]), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out["embedding_norm"], axis=1), 1.0, atol=1e-5)
