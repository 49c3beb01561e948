"""Manifests: round trip, atomic write, byte-identical rewrite, clear corruption errors."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from dataselect.core.manifest import (
    ManifestError,
    ManifestUnreadableError,
    read_manifest,
    selection_key,
    write_manifest,
)
from dataselect.selectors import Selection, get_selector


def _write(path, sel, **kw):
    args = {"selector": "kcenter", "params": {"metric": "euclidean", "initial": None,
                                              "per_class": "none"},
            "budget": len(sel.indices), "seed": 3, "features": "feat-abc", "fraction": 0.1}
    return write_manifest(path, sel, **{**args, **kw})


def _selection():
    x = np.random.default_rng(0).normal(size=(100, 4))
    return get_selector("kcenter").select({"embedding": x}, 10, 3)


def test_round_trip_with_ids_scores_and_metadata(tmp_path):
    sel = _selection()
    ids = np.arange(100, dtype=np.int64) * 7 + 1000
    path = _write(tmp_path / "m.parquet", sel, ids=ids)
    m = read_manifest(path)
    np.testing.assert_array_equal(m.ids, ids[sel.indices])
    np.testing.assert_array_equal(m.scores, sel.scores)  # inf for the first pick survives
    assert m.meta["selector"] == "kcenter" and m.meta["seed"] == 3 and m.meta["budget"] == 10
    assert m.meta["fraction"] == 0.1 and m.meta["features"] == "feat-abc"
    assert m.meta["info"] == sel.info
    assert m.meta["key"] == selection_key("kcenter", m.meta["params"], 10, 3, "feat-abc")
    schema = pq.read_schema(path)
    assert [str(t) for t in schema.types] == ["int64", "int32", "double"]


def test_unscored_selection_writes_null_scores(tmp_path):
    sel = Selection(np.array([4, 2, 9]))
    m = read_manifest(_write(tmp_path / "r.parquet", sel, selector="random"))
    assert m.scores is None and m.ids.tolist() == [4, 2, 9]
    assert pq.read_table(tmp_path / "r.parquet").column("score").null_count == 3


def test_atomic_write_leaves_no_temp_files(tmp_path, monkeypatch):
    _write(tmp_path / "a.parquet", _selection())
    assert os.listdir(tmp_path) == ["a.parquet"]

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(OSError, match="disk full"):
        _write(tmp_path / "b.parquet", _selection())
    assert os.listdir(tmp_path) == ["a.parquet"]  # no partial b, no temp


def test_rewrite_is_byte_identical(tmp_path):
    a = _write(tmp_path / "a.parquet", _selection())
    b = _write(tmp_path / "b.parquet", _selection())
    assert a.read_bytes() == b.read_bytes()
    a2 = _write(tmp_path / "a.parquet", _selection())
    assert a2.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "footer"])
def test_corrupt_file_is_a_clear_error(tmp_path, damage):
    path = _write(tmp_path / "m.parquet", _selection())
    data = path.read_bytes()
    # "footer": bytes garbled inside a valid frame (parquet raises an OSError without errno).
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"x" * 64, "empty": b"",
                      "footer": data[:4] + b"\xff" * 40 + data[44:]}[damage])
    with pytest.raises(ManifestError, match=r"m\.parquet is corrupt or truncated") as info:
        read_manifest(path)
    assert not isinstance(info.value, ManifestUnreadableError)  # corrupt: recomputing fixes it


@pytest.mark.parametrize("err", [PermissionError(13, "Permission denied"), OSError(5, "Input/output error")])
def test_a_file_that_cannot_be_read_is_not_called_corrupt(tmp_path, monkeypatch, err):
    path = _write(tmp_path / "m.parquet", _selection())

    def refuse(*a, **k):
        raise err

    monkeypatch.setattr(pq, "read_table", refuse)
    with pytest.raises(ManifestUnreadableError, match=r"m\.parquet cannot be read") as info:
        read_manifest(path)
    assert "corrupt" not in str(info.value) and type(err).__name__ in str(info.value)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "nope.parquet")
    import pyarrow as pa
    pq.write_table(pa.table({"id": pa.array([1], pa.int64())}), tmp_path / "f.parquet")
    with pytest.raises(ManifestError, match="has columns"):
        read_manifest(tmp_path / "f.parquet")


def test_selection_key_is_stable_and_sensitive():
    p = get_selector("kmeans").params()
    k = selection_key("kmeans", p, 100, 0, "f1")
    assert k == selection_key("kmeans", dict(reversed(list(p.items()))), 100, 0, "f1")
    assert len(k) == 64 and int(k, 16) >= 0
    others = {selection_key("kmeans", {**p, "n_clusters": 99}, 100, 0, "f1"),
              selection_key("kmeans", p, 101, 0, "f1"), selection_key("kmeans", p, 100, 1, "f1"),
              selection_key("kmeans", p, 100, 0, "f2"), selection_key("kcenter", p, 100, 0, "f1")}
    assert k not in others and len(others) == 5
    with pytest.raises(TypeError, match="JSON-serialisable"):
        selection_key("kmeans", {"x": object()}, 1, 0, "f")


def test_a_manifest_written_by_an_earlier_version_still_reads():
    """Studies keep manifests across upgrades: the file format (columns, the metadata key
    ``dataselect.manifest``) must not follow module renames. The fixture was written once."""
    from pathlib import Path

    m = read_manifest(Path(__file__).parent / "data" / "manifest-format-1.parquet")
    np.testing.assert_array_equal(m.ids, [13, 10, 12])
    np.testing.assert_array_equal(m.scores, [0.5, 0.25, 0.125])
    assert m.meta["selector"] == "kcenter" and m.meta["seed"] == 7 and m.meta["version"] == 1


def test_code_versions_enter_the_key_only_when_not_one(tmp_path):
    """Version-1 code keeps the key (and bytes) manifests had before versions existed;
    a bumped version is a new key, recorded in the metadata."""
    p = get_selector("kcenter").params()
    old = selection_key("kcenter", p, 10, 3, "feat-abc")
    assert selection_key("kcenter", p, 10, 3, "feat-abc", {}) == old
    bumped = selection_key("kcenter", p, 10, 3, "feat-abc", {"KCenterGreedy": 2})
    assert bumped != old
    assert bumped != selection_key("kcenter", p, 10, 3, "feat-abc", {"KCenterGreedy": 3})
    plain = _write(tmp_path / "a.parquet", _selection(), params=p)
    same = _write(tmp_path / "b.parquet", _selection(), params=p, code={})
    assert plain.read_bytes() == same.read_bytes() and "code" not in read_manifest(plain).meta
    m = read_manifest(_write(tmp_path / "c.parquet", _selection(), params=p, code={"KCenterGreedy": 2}))
    assert m.meta["code"] == {"KCenterGreedy": 2} and m.meta["key"] == bumped


def test_the_format_1_fixture_keeps_its_key():
    """A manifest of today's (version-1) selector code is found under the key it was written with."""
    from pathlib import Path

    m = read_manifest(Path(__file__).parent / "data" / "manifest-format-1.parquet")
    meta = m.meta
    assert selection_key(meta["selector"], meta["params"], meta["budget"], meta["seed"],
                         meta["features"], get_selector("kcenter").code_versions()) == meta["key"]
