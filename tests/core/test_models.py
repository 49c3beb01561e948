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


def _folder(path, weights: bytes):
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text('{"model_type": "bert"}')
    (path / "w.bin").write_bytes(weights)
    return str(path)


def test_fingerprint_is_content_based(tmp_path):
    a = model_fingerprint(_folder(tmp_path / "a", b"\x00" * 10))
    assert model_fingerprint(_folder(tmp_path / "b", b"\x00" * 10)) == a  # same files, same key
    assert model_fingerprint(_folder(tmp_path / "c", b"\x01" * 10)) != a


def _rewrite_later(path, data: bytes) -> None:
    """Write ``data`` over ``path`` in place (same inode), once the clock has moved past its
    mtime: a model saved again, as a retrained stand-in is, not within one clock tick."""
    before = path.stat().st_mtime_ns
    deadline = time.monotonic() + 5
    while time.time_ns() <= before + 10_000_000 and time.monotonic() < deadline:
        time.sleep(0.005)
    with path.open("r+b") as fh:
        fh.write(data)


def test_a_folder_edited_in_place_gets_a_new_key_in_the_same_process(tmp_path):
    """The memo is keyed on the files' stats: an in-place edit (same name, same size,
    same inode) is hashed again, and putting the old bytes back gives the old key."""
    ref = _folder(tmp_path / "m", b"\x00" * 10)
    w = tmp_path / "m" / "w.bin"
    old = model_fingerprint(ref)
    assert model_fingerprint(ref) == old  # memoised: same files, same key
    ino = w.stat().st_ino
    _rewrite_later(w, b"\x01" * 10)
    assert w.stat().st_ino == ino and w.stat().st_size == 10
    new = model_fingerprint(ref)
    assert new != old
    _rewrite_later(w, b"\x00" * 10)
    assert model_fingerprint(ref) == old
    (tmp_path / "m" / "tokenizer.json").write_text("{}")  # a file added
    assert model_fingerprint(ref) not in (old, new)


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
        keys.append(runner._key(spec, "frame-fp", 8192))
    assert keys[0] != keys[1] and keys[0] == keys[2]
    _hub_cache(tmp_path, "org/other", [old], old)
    assert model_fingerprint("org/other") != model_fingerprint("org/model")


def test_a_hub_id_whose_revision_is_unknown_fails_loudly(tmp_path, monkeypatch):
    """Not cached and offline: no key from the id alone, a ModelError instead."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=r"'org/missing'.*revision .*unknown"):
        model_fingerprint("org/missing")
