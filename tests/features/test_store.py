"""Feature store: cache hits without model loads, corrupt/missing shards, id alignment."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

import dataselect.core.models as models
from dataselect.core.config import FeaturesConfig
from dataselect.core.errors import CacheError, DataError, UserError
from dataselect.features import FeatureStore, compute_features
from dataselect.features import perplexity as ppl_mod
from dataselect.features import text_metrics as tm_mod


@pytest.fixture(scope="module")
def cfg(tiny_qwen):
    # Cheap families only: tiny random causal LM, textstat, tokenizer; 4 shards of 50.
    return FeaturesConfig(encoder="minilm", perplexity_model=tiny_qwen, perplexity_batch_size=16,
                          shard_size=50, device="cpu", max_length=64)


WHICH = {"perplexity", "text_metrics", "subword_ratio"}


def _no_models(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a model was loaded on a cache hit")

    for name in ("load_tokenizer", "load_encoder", "load_causal_lm", "load_masked_lm"):
        monkeypatch.setattr(models, name, boom)


def _count_rows(monkeypatch):
    seen: list[int] = []
    orig = ppl_mod.lm_scores

    def counting(texts, *a, **k):
        seen.append(len(texts))
        return orig(texts, *a, **k)

    monkeypatch.setattr(ppl_mod, "lm_scores", counting)
    return seen


@pytest.mark.parametrize("cached", [False, True])
def test_columns_keeps_only_those_in_memory_and_stores_every_family(tmp_path, sample, cfg, cached):
    """``columns``: the returned table holds id, label and those columns (the
    others are computed or checked, and cached, not held); same fingerprint,
    same values, and the store's table still has every column."""
    if cached:
        compute_features(sample, cfg, tmp_path, which=WHICH, engine="local", progress=False)
    part = compute_features(sample, cfg, tmp_path, which=WHICH, engine="local", progress=False,
                            columns=["perplexity"])
    full = compute_features(sample, cfg, tmp_path, which=WHICH, engine="local", progress=False)
    assert set(part) == {"id", "label", "perplexity"} and len(full.columns) > 4
    assert part.fingerprint == full.fingerprint
    for k in part:
        np.testing.assert_array_equal(part[k], full[k])
    loaded = FeatureStore(tmp_path).load(part.fingerprint)
    assert loaded.columns == full.columns
    np.testing.assert_array_equal(loaded["mtld"], full["mtld"])


def test_second_run_is_a_cache_hit_without_model_load(tmp_path, sample, cfg, monkeypatch):
    first = compute_features(sample, cfg, tmp_path, which=WHICH, engine="local", progress=False)
    _no_models(monkeypatch)
    monkeypatch.setattr(tm_mod, "text_metrics", lambda *a, **k: pytest.fail("recomputed text metrics"))
    again = compute_features(sample, cfg, tmp_path, which=WHICH, engine="local", progress=False)
    assert again.fingerprint == first.fingerprint
    for k in first:
        np.testing.assert_array_equal(again[k], first[k])
    loaded = FeatureStore(tmp_path).load(first.fingerprint)
    assert loaded.columns == first.columns
    np.testing.assert_array_equal(loaded["perplexity"], first["perplexity"])


def test_each_family_records_its_columns_and_compute_seconds(tmp_path, sample, cfg, monkeypatch):
    import time as _time

    real = tm_mod.text_metrics

    def slow(*a, **k):  # text metrics take at least 0.2 s: the recorded time must show it
        _time.sleep(0.2)
        return real(*a, **k)

    monkeypatch.setattr(tm_mod, "text_metrics", slow)
    t = compute_features(sample, cfg, tmp_path, which=WHICH, engine="local", progress=False)
    costs = FeatureStore(tmp_path).family_costs(t.fingerprint)
    assert set(costs) == set(WHICH)
    assert "mtld" in costs["text_metrics"]["columns"] and costs["text_metrics"]["seconds"] >= 0.2
    assert all(c["seconds"] is not None and c["seconds"] >= 0 for c in costs.values())
    assert FeatureStore(tmp_path).family_costs("no-such-table") == {}


def test_table_shape_and_read_only(tmp_path, sample, cfg):
    t = compute_features(sample, cfg, tmp_path, which=WHICH, engine="local", progress=False)
    assert t.n_rows == len(sample) and t.columns[:2] == ("id", "label")
    for c in ("perplexity", "lm_mean_nll", "lm_token_count", "token_count", "mtld", "subword_ratio"):
        assert t[c].shape == (len(sample),)
    np.testing.assert_array_equal(t["label"], sample["label"].to_numpy())
    with pytest.raises(ValueError):
        t["perplexity"][0] = 1.0
    keys = {p.parent.name for p in tmp_path.glob("*/shard-*.parquet")}
    assert len(keys) == 3 and all(len(list((tmp_path / k).glob("shard-*.parquet"))) == 4 for k in keys)
    assert all((tmp_path / k / "_meta.json").is_file() for k in keys)


def test_corrupt_shard_is_recomputed_with_warning(tmp_path, sample, cfg, monkeypatch, caplog):
    first = compute_features(sample, cfg, tmp_path, which={"perplexity"}, engine="local", progress=False)
    (shard,) = [p for p in tmp_path.glob("*/shard-00002.parquet")]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # truncated, as by a crash mid-copy
    seen = _count_rows(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="dataselect.features.store"):
        again = compute_features(sample, cfg, tmp_path, which={"perplexity"}, engine="local", progress=False)
    assert "corrupt" in caplog.text and "shard-00002" in caplog.text
    assert sum(seen) == 50
    np.testing.assert_allclose(again["perplexity"], first["perplexity"], rtol=1e-6)


@pytest.mark.parametrize("checksums", [True, False])
def test_wrong_ids_or_nan_are_corrupt(tmp_path, sample, cfg, monkeypatch, caplog, checksums):
    """Rewritten shards (valid parquet, wrong content) are recomputed: caught by the
    checksum written beside each shard, or, for a shard without one (written
    before checksums), by the id and value checks."""
    import pyarrow.parquet as pq

    compute_features(sample, cfg, tmp_path, which={"perplexity"}, engine="local", progress=False)
    (s0,) = tmp_path.glob("*/shard-00000.parquet")
    (s1,) = tmp_path.glob("*/shard-00001.parquet")
    t = pq.read_table(s1)
    pq.write_table(t.set_column(0, "id", pq.read_table(s0).column("id")), s1)  # shard 0's ids in shard 1
    d = pq.read_table(s0).to_pandas()
    d.loc[3, "perplexity"] = np.nan
    pq.write_table(__import__("pyarrow").Table.from_pandas(d, preserve_index=False), s0)
    if not checksums:
        for p in (s0, s1):
            p.with_name(p.name + ".sha256").unlink()
    seen = _count_rows(monkeypatch)
    with caplog.at_level(logging.WARNING):
        compute_features(sample, cfg, tmp_path, which={"perplexity"}, engine="local", progress=False)
    if checksums:
        assert caplog.text.count("checksum mismatch") == 2
    else:
        assert "ids differ" in caplog.text and "NaN perplexity" in caplog.text
    assert sum(seen) == 100
    assert len(list(tmp_path.glob("*/shard-*.parquet.sha256"))) == 4  # rewritten with the shards


def test_a_flipped_byte_that_still_decodes_is_caught_by_the_checksum(tmp_path, sample, cfg, monkeypatch,
                                                                      caplog):
    """Decoding alone misses some damage (a flipped byte in a data page decodes to
    other numbers); the shard's sha256 does not."""
    first = compute_features(sample, cfg, tmp_path, which={"perplexity"}, engine="local", progress=False)
    (shard,) = tmp_path.glob("*/shard-00001.parquet")
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x01
    shard.write_bytes(bytes(data))
    seen = _count_rows(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="dataselect.features.store"):
        again = compute_features(sample, cfg, tmp_path, which={"perplexity"}, engine="local", progress=False)
    assert "shard-00001" in caplog.text and "checksum mismatch" in caplog.text
    assert sum(seen) == 50
    np.testing.assert_allclose(again["perplexity"], first["perplexity"], rtol=1e-6)


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied"), MemoryError("cannot allocate"),
                                   OSError(5, "Input/output error")], ids=["permission", "memory", "eio"])
def test_a_read_error_that_proves_nothing_keeps_the_shards_and_reaches_the_user(
        tmp_path, sample, cfg, monkeypatch, error):
    """A PermissionError, MemoryError or I/O error while reading says nothing about
    the file: every shard, checksum and meta file stays, and the error is one
    CacheError line naming the shard, with the original error as its cause."""
    from pathlib import Path

    compute_features(sample, cfg, tmp_path, which={"perplexity"}, engine="local", progress=False)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    real = Path.read_bytes

    def failing(self):
        if self.name == "shard-00002.parquet":
            raise error
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", failing)
    seen = _count_rows(monkeypatch)
    with pytest.raises(CacheError) as info:
        compute_features(sample, cfg, tmp_path, which={"perplexity"}, engine="local", progress=False)
    monkeypatch.setattr(Path, "read_bytes", real)
    msg = str(info.value)
    assert "shard-00002.parquet" in msg and type(error).__name__ in msg and "left in place" in msg
    assert "\n" not in msg and info.value.__cause__ is error
    assert seen == []  # nothing recomputed
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # not one file deleted or changed


def test_a_decode_error_of_bytes_whose_checksum_matches_is_not_corruption(tmp_path, sample, cfg,
                                                                           monkeypatch):
    """Bytes equal to what was written cannot be corrupt: a decode error then is
    the reader's (a library bug), raised with the shard kept."""
    import pyarrow as pa

    from dataselect.features import store as store_mod

    compute_features(sample, cfg, tmp_path, which={"perplexity"}, engine="local", progress=False)
    n_files = len(list(tmp_path.rglob("*")))

    def broken(data, columns):
        raise pa.ArrowInvalid("simulated reader bug")

    monkeypatch.setattr(store_mod, "_decode", broken)
    with pytest.raises(CacheError, match="ArrowInvalid: simulated reader bug"):
        compute_features(sample, cfg, tmp_path, which={"perplexity"}, engine="local", progress=False)
    assert len(list(tmp_path.rglob("*"))) == n_files


def test_interrupted_run_recomputes_only_missing_shards(tmp_path, sample, cfg, monkeypatch):
    first = compute_features(sample, cfg, tmp_path, which={"perplexity"}, engine="local", progress=False)
    (key,) = {p.parent for p in tmp_path.glob("*/shard-*.parquet")}
    (key / "shard-00001.parquet").unlink()
    (key / "shard-00003.parquet").unlink()
    (key / "_meta.json").unlink()
    (key / "shard-00000.parquet.tmp-deadbeef").write_bytes(b"half a shard")  # never read
    seen = _count_rows(monkeypatch)
    again = compute_features(sample, cfg, tmp_path, which={"perplexity"}, engine="local", progress=False)
    assert sum(seen) == 100
    assert (key / "_meta.json").is_file()
    np.testing.assert_allclose(again["perplexity"], first["perplexity"], rtol=1e-6)


def test_killed_mid_run_resumes(tmp_path, sample, cfg, monkeypatch):
    """A crash mid-run leaves the shards finished so far; the rerun computes the rest."""

    class Killed(Exception):
        pass

    orig = ppl_mod.lm_scores
    calls = {"n": 0}

    def dies(texts, *a, **k):
        calls["n"] += 1
        if calls["n"] > 2:
            raise Killed
        return orig(texts, *a, **k)

    monkeypatch.setattr(ppl_mod, "lm_scores", dies)
    small = cfg.model_copy(update={"perplexity_batch_size": 1})  # batch_rows 16: several per shard
    with pytest.raises(Killed):
        compute_features(sample, small, tmp_path, which={"perplexity"}, engine="local", progress=False)
    assert len(list(tmp_path.glob("*/shard-*.parquet"))) == 0  # 32 rows done < one shard of 50
    big = cfg.model_copy(update={"perplexity_batch_size": 4})  # batch_rows 64 > shard: 1 call = 1 shard+
    calls["n"] = 0
    with pytest.raises(Killed):
        compute_features(sample, big, tmp_path, which={"perplexity"}, engine="local", progress=False)
    done = len(list(tmp_path.glob("*/shard-*.parquet")))
    assert 1 <= done < 4
    monkeypatch.setattr(ppl_mod, "lm_scores", orig)
    seen = _count_rows(monkeypatch)
    compute_features(sample, big, tmp_path, which={"perplexity"}, engine="local", progress=False)
    assert sum(seen) == (4 - done) * 50


def test_ids_align_after_shuffling(tmp_path, sample, cfg, monkeypatch):
    first = compute_features(sample, cfg, tmp_path, which=WHICH, engine="local", progress=False)
    shuffled = sample.sample(frac=1.0, random_state=3).reset_index(drop=True)
    _no_models(monkeypatch)  # same content: every family is a cache hit
    t = compute_features(shuffled, cfg, tmp_path, which=WHICH, engine="local", progress=False)
    np.testing.assert_array_equal(t["id"], shuffled["id"].to_numpy())
    np.testing.assert_array_equal(t["label"], shuffled["label"].to_numpy())
    pos = pd.Series(np.arange(len(sample)), index=sample["id"])[shuffled["id"]].to_numpy()
    for c in ("perplexity", "token_count", "subword_ratio", "mtld"):
        np.testing.assert_array_equal(t[c], first[c][pos])
    assert t.fingerprint != first.fingerprint  # row order is part of the table, not of the shards
    # Spot check: the row's own text metric, computed fresh.
    from dataselect.features.text_metrics import words

    i = 17
    assert t["token_count"][i] == len(words(shuffled["text"][i]))


def test_settings_change_the_key(tmp_path, sample, cfg):
    compute_features(sample, cfg, tmp_path, which={"perplexity"}, engine="local", progress=False)
    other = cfg.model_copy(update={"max_length": 8})
    t = compute_features(sample, other, tmp_path, which={"perplexity"}, engine="local", progress=False)
    assert len({p.parent for p in tmp_path.glob("*/shard-*.parquet")}) == 2
    assert t["lm_token_count"].max() == 8


def test_new_labels_reuse_the_families_but_not_the_table(tmp_path, sample, cfg, monkeypatch):
    """No family reads labels: a label-noise study on the same texts is a cache hit."""
    first = compute_features(sample, cfg, tmp_path, which=WHICH, engine="local", progress=False)
    noisy = sample.assign(label=1 - sample["label"])
    _no_models(monkeypatch)
    monkeypatch.setattr(tm_mod, "text_metrics", lambda *a, **k: pytest.fail("recomputed text metrics"))
    again = compute_features(noisy, cfg, tmp_path, which=WHICH, engine="local", progress=False)
    assert len({p.parent for p in tmp_path.glob("*/shard-*.parquet")}) == len(WHICH)
    np.testing.assert_array_equal(again["label"], noisy["label"].to_numpy())
    np.testing.assert_array_equal(again["perplexity"], first["perplexity"])
    assert again.fingerprint != first.fingerprint  # the table (labels) differs


def test_input_validation(tmp_path, sample, cfg):
    with pytest.raises(DataError, match="unique"):
        compute_features(pd.concat([sample, sample.iloc[:1]]), cfg, tmp_path, engine="local")
    with pytest.raises(DataError, match="lacks columns"):
        compute_features(sample.drop(columns="label"), cfg, tmp_path, engine="local")
    with pytest.raises(UserError, match="unknown families"):
        compute_features(sample, cfg, tmp_path, which={"embeddings"}, engine="local")
    with pytest.raises(UserError, match="mlm_model"):
        compute_features(sample, cfg, tmp_path, which={"pseudo_perplexity"}, engine="local")
    with pytest.raises(CacheError):
        FeatureStore(tmp_path).load("0" * 64)


def test_every_family_through_the_runner(tmp_path, sample, tiny_qwen, tiny_mlm):
    rows = sample.iloc[:40]
    cfg = FeaturesConfig(encoder="minilm", perplexity_model=tiny_qwen, mlm_model=tiny_mlm, shard_size=16,
                         device="cpu", max_length=64)
    t = compute_features(rows, cfg, tmp_path, engine="local", progress=False)
    want = {"id", "label", "embedding", "embedding_norm", "perplexity", "lm_mean_nll", "lm_token_count",
            "pseudo_perplexity", "mlm_mean_nll", "mlm_token_count", "token_count", "char_count",
            "type_token_ratio", "avg_word_len", "flesch_reading_ease", "syllable_count", "sentence_count",
            "mattr", "mtld", "subword_ratio"}
    assert set(t.columns) == want
    assert t["embedding"].shape == (40, 384) and t["embedding"].dtype == np.float32
    assert np.isfinite(t["pseudo_perplexity"]).all() and (t["subword_ratio"] >= 1).all()
