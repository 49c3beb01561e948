"""The Ray Data path (actor pool / tasks) gives what the in-process path gives."""

from __future__ import annotations

import numpy as np
import pytest

from dataselect.config import FeaturesConfig
from dataselect.features import compute_features
from dataselect.features.embeddings import EmbedBatch


@pytest.mark.usefixtures("features_ray")
def test_ray_data_path_equals_local_path(tmp_path, sample, tiny_qwen):
    rows = sample.iloc[:120].sample(frac=1.0, random_state=0).reset_index(drop=True)
    cfg = FeaturesConfig(encoder="minilm", perplexity_model=tiny_qwen, shard_size=40, batch_size=16,
                         device="cpu", max_length=64, num_actors=1)
    which = {"embedding", "perplexity", "text_metrics"}
    via_ray = compute_features(rows, cfg, tmp_path / "ray", which=which, engine="ray", progress=False)
    local = compute_features(rows, cfg, tmp_path / "local", which=which, engine="local", progress=False)
    assert via_ray.fingerprint == local.fingerprint  # the engine is not part of the key
    np.testing.assert_array_equal(via_ray["id"], rows["id"].to_numpy())
    np.testing.assert_allclose(via_ray["embedding"], local["embedding"], atol=1e-5)
    np.testing.assert_allclose(via_ray["embedding_norm"], local["embedding_norm"], atol=1e-6)
    np.testing.assert_allclose(via_ray["perplexity"], local["perplexity"], rtol=1e-5)
    np.testing.assert_array_equal(via_ray["mtld"], local["mtld"])
    # And the plain function on the frame's own order agrees with both.
    udf = EmbedBatch(model="minilm", batch_size=7)
    direct = udf({"id": rows["id"].to_numpy(), "text": rows["text"].to_numpy(object)})
    np.testing.assert_allclose(via_ray["embedding"], direct["embedding"], atol=1e-5)


@pytest.mark.usefixtures("features_ray")
def test_ray_udf_on_take_batch(sample):
    import ray.data

    ds = ray.data.from_pandas(sample[["id", "text"]].iloc[:20])
    batch = ds.take_batch(20, batch_format="numpy")
    out = EmbedBatch(model="minilm", batch_size=8)(batch)
    np.testing.assert_array_equal(out["id"], sample["id"].to_numpy()[:20])
    assert out["embedding"].shape == (20, 384)
