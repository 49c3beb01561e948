"""A saved feature table by reference, and reading its columns shard by shard.

What the driver hands to select tasks (:class:`TableRef`: store root and
table key, no arrays), and what a task reads with it: only the columns its
selector needs, straight from the parquet shards (:func:`read_columns`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataselect.core.errors import CacheError, first_line
from dataselect.features.store import (
    INDEX,
    TABLE,
    FeatureStore,
    FeatureTable,
    atomic_write_bytes,
    family_key,
    from_arrow,
    is_decode_error,
    shard_bounds,
)

__all__ = ["ColumnShards", "TableRef", "column_shards", "column_width", "read_columns",
           "save_embedding_table", "table_index"]


@dataclass(frozen=True)
class TableRef:
    """A saved feature table by reference: store root and table key, no arrays.

    What the driver hands to select tasks so each reads only the columns it
    needs from the shards itself (a 10 M x 768 float32 table is ~30 GB per
    copy: it must not pass through the driver or the object store).
    """

    root: Path
    key: str

    def exists(self) -> bool:
        return (Path(self.root) / self.key / TABLE).is_file()

    def columns(self) -> list[str]:
        """Every column the saved table has, ``id`` first."""
        try:
            return list(json.loads((Path(self.root) / self.key / TABLE).read_text())["columns"])
        except (OSError, ValueError, KeyError) as err:
            raise CacheError(f"features: table {self.key} in {self.root} is missing or unreadable ({err})") from err


@dataclass(frozen=True)
class ColumnShards:
    """Where one column of a saved table lives: its family's shard files, in id order."""

    family: str
    paths: tuple[Path, ...]
    shard_size: int


def table_index(ref: TableRef) -> dict[str, np.ndarray]:
    """``id`` (and ``label``) of a saved table, in frame order (16 bytes a row)."""
    import pyarrow.parquet as pq

    d = Path(ref.root) / ref.key
    try:
        return from_arrow(pq.read_table(d / INDEX), pq.read_schema(d / INDEX).names)
    except (OSError, ValueError) as err:
        raise CacheError(f"features: table {ref.key} in {ref.root} is missing or unreadable ({err})") from err


def column_shards(ref: TableRef, column: str) -> ColumnShards:
    """Shard files holding ``column`` of a saved table (a family column, not id/label)."""
    store = FeatureStore(ref.root)
    try:
        spec = json.loads((Path(ref.root) / ref.key / TABLE).read_text())
    except (OSError, ValueError) as err:
        raise CacheError(f"features: table {ref.key} in {ref.root} is missing or unreadable ({err})") from err
    for name, key in spec["families"].items():
        meta = store.read_meta(key)
        if meta is None:
            raise CacheError(f"features: family {name!r} ({key[:12]}) is incomplete; rerun `dataselect features`")
        if column in meta["columns"]:
            paths = tuple(store.shard_path(key, i) for i in range(meta["n_shards"]))
            return ColumnShards(name, paths, int(meta["shard_size"]))
    raise CacheError(f"features: table {ref.key[:12]} has no column {column!r}; it has {spec['columns']}")


def column_width(shards: ColumnShards, column: str) -> int:
    """Values per row of ``column`` (d of an (n, d) column, 1 for a scalar column), from the schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    typ = pq.read_schema(shards.paths[0]).field(column).type
    return int(typ.list_size) if pa.types.is_fixed_size_list(typ) else 1


def read_columns(
    ref: TableRef, columns: Sequence[str], rows: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Columns of a saved table in frame order, streamed shard by shard.

    Each shard is read with ``columns=`` and its rows are copied straight
    into one preallocated array per column, so the peak is the result plus
    one shard (``FeatureStore.load`` holds the shards, their concatenation
    and the reordered copy at once, ~3x). ``id`` and ``label`` come from the
    table's index. ``rows`` (sorted frame positions) keeps only those rows,
    in that order.

    Raises
    ------
    CacheError
        A table, family or shard is missing, or a shard's ids differ from the index's.
    """
    import pyarrow.parquet as pq

    index = table_index(ref)
    frame_ids = index["id"]
    n = len(frame_ids)
    keep = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    out: dict[str, np.ndarray] = {k: index[k][keep] for k in ("id", "label") if k in index and k in columns}
    wanted = [c for c in columns if c not in ("id", "label")]
    if not wanted:
        return out
    canon = np.sort(frame_ids)
    # slot[c] = where canonical (id-sorted) row c goes in the output, -1 if not kept.
    slot = np.full(n, -1, dtype=np.int64)
    slot[np.searchsorted(canon, frame_ids[keep])] = np.arange(len(keep))
    by_family: dict[str, tuple[ColumnShards, list[str]]] = {}
    for c in wanted:
        shards = column_shards(ref, c)
        by_family.setdefault(shards.family, (shards, []))[1].append(c)
    for shards, cols in by_family.values():
        for i, path in enumerate(shards.paths):
            lo = i * shards.shard_size
            hi = min(lo + shards.shard_size, n)
            dest = slot[lo:hi]
            if rows is not None and not (dest >= 0).any():
                continue
            try:
                values = from_arrow(pq.read_table(path, columns=["id", *cols]), ["id", *cols])
            except Exception as err:  # noqa: BLE001 - said as one line; nothing is deleted here
                hint = ("rerun `dataselect features`" if is_decode_error(err)
                        else "fix the cause (permissions, memory, disk) and rerun")
                raise CacheError(f"features: shard {path} is unreadable ({first_line(err)[:300]}); "
                                 f"{hint}") from err
            if not np.array_equal(values["id"], canon[lo:hi]):
                raise CacheError(f"features: shard {path} ids differ from the table's; rerun `dataselect features`")
            mine = dest >= 0
            for c in cols:
                v = values[c]
                if c not in out:
                    out[c] = np.empty((len(keep), *v.shape[1:]), dtype=v.dtype)
                out[c][dest[mine]] = v[mine]
    return out


def save_embedding_table(
    root: str | Path, ids: np.ndarray, labels: np.ndarray,
    embedding: np.ndarray | Callable[[int, int], np.ndarray], *, shard_size: int = 8192,
    name: str = "external",
) -> TableRef:
    """Save embeddings made elsewhere (synthetic pools, another pipeline) as a store table.

    Parameters
    ----------
    root : path
        Feature store root.
    ids, labels : ndarray of int64, shape (n,)
        Frame order (the order selections index).
    embedding : ndarray (n, d) in frame order, or callable
        ``embedding(lo, hi)`` returns rows ``[lo, hi)`` of the id-sorted
        table, so a pool larger than memory is written shard by shard.
    name : str
        Goes into the keys, with the ids, labels and shard size.

    Returns
    -------
    TableRef
        One ``embedding`` family; reload with :func:`read_columns`.
    """
    store = FeatureStore(root)
    ids = np.asarray(ids, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    canon = ids[order]
    digest = hashlib.sha256(ids.tobytes() + labels.tobytes()).hexdigest()
    key = family_key(digest, f"external:{name}", None, {}, shard_size)
    bounds = shard_bounds(len(ids), shard_size)
    for i, (lo, hi) in enumerate(bounds):
        rows = embedding(lo, hi) if callable(embedding) else np.asarray(embedding)[order[lo:hi]]
        store.write_shard(key, i, {"id": canon[lo:hi], "embedding": np.asarray(rows, dtype=np.float32)})
    store.finish(key, {"family": "embedding", "key": key, "n_rows": len(ids), "shard_size": shard_size,
                       "n_shards": len(bounds), "columns": ["embedding"], "source": name})
    table_key = hashlib.sha256(json.dumps({"families": {"embedding": key}, "rows": digest}).encode()).hexdigest()
    store.save_table(FeatureTable({"id": ids, "label": labels}, table_key), {"embedding": key})
    spec = json.loads((store.root / table_key / TABLE).read_text())
    if spec["columns"] != ["id", "label", "embedding"]:  # save_table lists the columns it was given
        spec["columns"] = ["id", "label", "embedding"]
        atomic_write_bytes(store.root / table_key / TABLE, json.dumps(spec, indent=1).encode())
    return TableRef(Path(root), table_key)
