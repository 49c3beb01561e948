"""The Ray Data path (actor pool / tasks) gives what the in-process path gives."""

from __future__ import annotations

import numpy as np
import pytest

from dataselect.core.config import FeaturesConfig
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


def test_auto_engine_runs_in_process_only_where_ray_data_adds_nothing(monkeypatch):
    """``auto``: a CPU model family with one actor on this machine's one node
    (or before Ray starts) runs in this process; several actors, several
    nodes, a remote node, a GPU or the model-free text metrics go through Ray
    Data; an explicit engine is kept."""
    import ray

    from dataselect.features.runner import pick_engine

    one, two = FeaturesConfig(num_actors=1), FeaturesConfig(num_actors=2)
    node = {"NodeID": "here", "Alive": True, "Resources": {"CPU": 2.0}}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    assert pick_engine("auto", one, "cpu", uses_model=True) == "local"
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "get_runtime_context",
                        lambda: type("Ctx", (), {"get_node_id": lambda self: "here"})())
    monkeypatch.setattr(ray, "nodes", lambda: [node, {"NodeID": "dead", "Alive": False, "Resources": {"CPU": 2.0}},
                                               {"NodeID": "head", "Alive": True, "Resources": {}}])  # a dead node, a head with no CPU
    assert pick_engine("auto", one, "cpu", uses_model=True) == "local"
    assert pick_engine("auto", two, "cpu", uses_model=True) == "ray"
    assert pick_engine("auto", one, "cuda", uses_model=True) == "ray"
    assert pick_engine("auto", one, "cpu", uses_model=False) == "ray"
    assert pick_engine("ray", one, "cpu", uses_model=True) == "ray"
    monkeypatch.setattr(ray, "nodes", lambda: [node, {**node, "NodeID": "other"}])
    assert pick_engine("auto", one, "cpu", uses_model=True) == "ray"
    monkeypatch.setattr(ray, "nodes", lambda: [{**node, "NodeID": "remote"}])  # one node, not this machine
    assert pick_engine("auto", one, "cpu", uses_model=True) == "ray"
    assert pick_engine("local", two, "cpu", uses_model=False) == "local"
