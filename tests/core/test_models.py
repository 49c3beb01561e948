"""Model references: offline short names, folders, hub ids that fail fast."""

from __future__ import annotations

import time

import pytest

from dataselect.core.errors import ModelError
from dataselect.core.models import (
    describe_model,
    load_classifier,
    load_encoder,
    load_tokenizer,
    model_fingerprint,
    resolve_model,
)


def test_minilm_short_name_resolves_to_a_bert_folder():
    path = resolve_model("minilm")
    info = describe_model("minilm")
    assert info["resolved"] == path
    assert info["model_type"] == "bert"


def test_minilm_loads_offline_and_embeds():
    tok = load_tokenizer("minilm")
    enc = load_encoder("minilm", device="cpu")
    batch = tok(["a gripping , funny film"], return_tensors="pt")
    out = enc(**batch).last_hidden_state
    assert out.shape[-1] == 384


def test_classifier_gets_a_fresh_head():
    clf = load_classifier("minilm", num_labels=3, device="cpu")
    assert clf.config.num_labels == 3


def test_hub_id_offline_fails_fast_naming_alternatives(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = time.monotonic()
    with pytest.raises(ModelError) as info:
        load_encoder("answerdotai/ModernBERT-base", device="cpu")
    assert time.monotonic() - t < 30
    msg = str(info.value)
    assert "'answerdotai/ModernBERT-base'" in msg and "offline" in msg and "'minilm'" in msg
    assert "\n" not in msg


def test_local_folder_errors(tmp_path):
    with pytest.raises(ModelError, match="folder does not exist"):
        resolve_model("./no/such/model")
    with pytest.raises(ModelError, match="folder has no config.json"):
        resolve_model(str(tmp_path))


def test_fingerprint_is_content_based(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "w.bin").write_bytes(b"\x00" * 10)
    a = model_fingerprint(str(tmp_path))
    model_fingerprint.cache_clear()
    (tmp_path / "w.bin").write_bytes(b"\x01" * 10)
    assert model_fingerprint(str(tmp_path)) != a


def _hub_cache(root, repo: str, commits: list[str], main: str) -> None:
    """The HF hub cache layout: models--org--name/{snapshots/<commit>/, refs/main}."""
    d = root / f"models--{repo.replace('/', '--')}"
    for c in commits:
        (d / "snapshots" / c).mkdir(parents=True, exist_ok=True)
        (d / "snapshots" / c / "config.json").write_text('{"model_type": "bert"}')
    (d / "refs").mkdir(parents=True, exist_ok=True)
    (d / "refs" / "main").write_text(main)


def test_two_revisions_of_one_hub_id_get_two_cache_keys(tmp_path, monkeypatch):
    """The feature cache key of a hub id follows the commit ``refs/main`` points at."""
    import huggingface_hub.constants as hf_constants

    from dataselect.core.config import FeaturesConfig
    from dataselect.features import runner

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    old, new = "a" * 40, "b" * 40
    spec = runner.FAMILIES["embedding"](FeaturesConfig(encoder="org/model"), "cpu")
    keys = []
    for main in (old, new, old):
        _hub_cache(tmp_path, "org/model", [old, new], main)
        model_fingerprint.cache_clear()
        keys.append(runner._key(spec, "frame-fp", 8192))
    assert keys[0] != keys[1] and keys[0] == keys[2]
    _hub_cache(tmp_path, "org/other", [old], old)
    model_fingerprint.cache_clear()
    assert model_fingerprint("org/other") != model_fingerprint("org/model")


def test_a_hub_id_whose_revision_is_unknown_fails_loudly(tmp_path, monkeypatch):
    """Not cached and offline: no key from the id alone, a ModelError instead."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_fingerprint.cache_clear()
    with pytest.raises(ModelError, match=r"'org/missing'.*revision .*unknown"):
        model_fingerprint("org/missing")
