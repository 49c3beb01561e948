"""Parquet feature shards on disk, keyed by content, written atomically.

Layout under the store root (``<study_dir>/features``)::

    <family key>/shard-00000.parquet   rows [0, S) of the frame sorted by id
    <family key>/shard-00001.parquet   rows [S, 2S) ...
    <family key>/_meta.json            done marker + provenance (written last)
    <table key>/_table.json            which family keys make up a FeatureTable
    <table key>/index.parquet          its id (and label) column, in frame order

A family key is ``sha256`` of the frame's content fingerprint (ids and
texts in id order; no family reads labels), the model fingerprint, the family code version
(``module.qualname@VERSION``), every output-changing setting including
defaults, and the shard size (STYLE.md caching rules; HF ``datasets``
fingerprinting). Shards are written to a temporary name and
``os.replace``-d into place, so readers never see a half-written shard; a
shard that fails to parse, has the wrong row count or ids, or holds NaN
where the family forbids it is reported and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dataselect.core.errors import CacheError, first_line
from dataselect.features.families import FAMILY_CHECKS

log = logging.getLogger(__name__)

META = "_meta.json"
TABLE = "_table.json"
INDEX = "index.parquet"
STORE_VERSION = 1


class FeatureTable(Mapping[str, np.ndarray]):
    """Read-only feature columns aligned to one frame's row order.

    ``table["embedding"]`` is (n, d) float32, every other column (n,). Row i
    of every column belongs to ``table["id"][i]``, the id of row i of the
    frame :func:`~dataselect.features.compute_features` was given.

    Attributes
    ----------
    fingerprint : str
        Cache key of this table: reload with ``FeatureStore(root).load(fingerprint)``.
    columns : tuple of str
        Column names, ``id`` first.
    """

    def __init__(self, columns: Mapping[str, np.ndarray], fingerprint: str) -> None:
        n = {len(v) for v in columns.values()}
        if len(n) > 1:
            raise ValueError(f"FeatureTable columns differ in length: { {k: len(v) for k, v in columns.items()} }")
        data = {}
        for k, v in columns.items():
            a = np.asarray(v)
            a.flags.writeable = False  # shared by selectors: a stray in-place edit must fail
            data[k] = a
        self._data = data
        self._fingerprint = fingerprint

    def __getitem__(self, key: str) -> np.ndarray:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self._data)

    @property
    def n_rows(self) -> int:
        return len(self._data["id"]) if "id" in self._data else 0

    def __repr__(self) -> str:
        return f"FeatureTable(n_rows={self.n_rows}, columns={list(self._data)}, fingerprint={self._fingerprint[:12]}…)"


def family_key(
    frame_fp: str, code: str, model_fp: str | None, settings: Mapping[str, Any], shard_size: int
) -> str:
    """sha256 over everything that determines a family's shards.

    Raises TypeError for non-JSON settings rather than falling back to a
    random key (the ``datasets`` failure mode STYLE.md warns about).
    """
    payload = {"store": STORE_VERSION, "frame": frame_fp, "code": code, "model": model_fp,
               "settings": dict(settings), "shard_size": shard_size}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, allow_nan=False).encode()).hexdigest()


def shard_bounds(n_rows: int, shard_size: int) -> list[tuple[int, int]]:
    """Row ranges ``[lo, hi)`` of each shard over the id-sorted frame (at least one shard)."""
    return [(lo, min(lo + shard_size, n_rows)) for lo in range(0, max(n_rows, 1), shard_size)]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _checksum_path(shard: Path) -> Path:
    return shard.with_name(shard.name + ".sha256")


def _has_checksum(shard: Path) -> bool:
    return _checksum_path(shard).is_file()


def _checksum_problem(shard: Path, data: bytes) -> str | None:
    """``"checksum mismatch"`` when the shard's bytes differ from those written, else None.

    A shard written before checksums existed has none (None: decoding decides).
    """
    try:
        want = _checksum_path(shard).read_text().strip()
    except FileNotFoundError:
        return None
    got = hashlib.sha256(data).hexdigest()
    return None if got == want else f"checksum mismatch: sha256 {got[:12]}…, written {want[:12]}…"


def _decode(data: bytes, columns: Sequence[str]) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return from_arrow(pq.read_table(pa.BufferReader(data), columns=list(columns)), columns)


def is_decode_error(err: BaseException) -> bool:
    """A parquet/arrow decode failure (bad bytes), not the environment failing to read them.

    pyarrow raises ``ArrowInvalid`` (a ValueError) for bytes that are not a
    parquet file or lack a column, and errno-less ``OSError`` for broken
    pages ("Couldn't deserialize thrift"); the bytes are decoded from memory,
    so an OSError with an errno (EACCES, EIO...) came from reading the file,
    and a MemoryError (``ArrowMemoryError`` too) from the machine, not the file.
    """
    import pyarrow as pa

    if isinstance(err, MemoryError):
        return False
    if isinstance(err, OSError):
        return err.errno is None
    return isinstance(err, (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError,
                            KeyError))


def to_arrow(values: Mapping[str, np.ndarray]) -> Any:
    import pyarrow as pa

    cols = {}
    for k, v in values.items():
        v = np.asarray(v)
        if v.ndim == 2:
            cols[k] = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(v).reshape(-1)), v.shape[1])
        elif v.dtype == object:  # a ragged column: one int vector per row
            lengths = np.fromiter((len(r) for r in v), dtype=np.int64, count=len(v))
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
            flat = np.concatenate([np.asarray(r, np.int32) for r in v]) if len(v) else np.zeros(0, np.int32)
            cols[k] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.int32()))
        else:
            cols[k] = pa.array(v)
    return pa.table(cols)


def from_arrow(table: Any, columns: Sequence[str]) -> dict[str, np.ndarray]:
    import pyarrow as pa

    out = {}
    for c in columns:
        col = table.column(c).combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            width = col.type.list_size
            out[c] = col.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
        elif pa.types.is_list(col.type):  # ragged: an object array of int vectors
            offsets = col.offsets.to_numpy()
            flat = col.flatten().to_numpy(zero_copy_only=False)
            rows = np.empty(len(col), dtype=object)
            rows[:] = np.split(flat, offsets[1:-1] - offsets[0])
            out[c] = rows
        else:
            out[c] = col.to_numpy(zero_copy_only=False)
    return out


class FeatureStore:
    """Content-keyed parquet shards of feature families, plus saved tables.

    Parameters
    ----------
    root : path
        Store folder, conventionally ``<study_dir>/features``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def shard_path(self, key: str, i: int) -> Path:
        return self.root / key / f"shard-{i:05d}.parquet"

    def read_meta(self, key: str) -> dict[str, Any] | None:
        """A family's ``_meta.json``, or None when it is absent or not whole JSON (not done yet).

        Any other failure to read it (permissions, I/O) is raised: it says
        nothing about the family, and "incomplete" would hide it.
        """
        p = self.root / key / META
        try:
            return json.loads(p.read_text())
        except FileNotFoundError:
            return None
        except ValueError:  # cut JSON: written atomically, so only by something else
            return None
        except OSError as err:
            raise CacheError(f"features: cannot read {p} ({first_line(err)}); nothing was changed") from err

    def read_shard(
        self,
        key: str,
        i: int,
        columns: Sequence[str],
        expected_ids: np.ndarray,
        check: Callable[[dict[str, np.ndarray]], str | None] | None = None,
    ) -> dict[str, np.ndarray] | None:
        """One shard's columns (``id`` included), or None when absent or proven corrupt.

        A shard is deleted (and so recomputed) only on proof that its bytes
        are bad or not this table's: a checksum that differs from the one
        written beside it, a parquet decode error of a file that has no
        checksum to compare, or decoded rows that are not the frame's (row
        count, ids, values the family forbids). Any other failure to read it
        (a PermissionError, a MemoryError, an I/O error, a decode error of
        bytes whose checksum matches) leaves every file in place and raises
        :class:`CacheError` naming the shard, with the original error as its cause.
        """
        p = self.shard_path(key, i)
        if not p.exists():
            return None
        try:
            data = p.read_bytes()
            problem = _checksum_problem(p, data)
            if problem is None:
                values = _decode(data, ["id", *columns])
        except Exception as err:  # noqa: BLE001 - sorted into proof of corruption or not, below
            if not is_decode_error(err) or _has_checksum(p):
                raise CacheError(
                    f"features: cannot read shard {p} ({first_line(err)[:300]}); it is left in place, "
                    "since that error does not show the file is corrupt: fix the cause (permissions, "
                    "memory, disk) and rerun") from err
            problem = f"unreadable ({first_line(err)[:200]})"
        if problem is None:
            if len(values["id"]) != len(expected_ids):
                problem = f"{len(values['id'])} rows, expected {len(expected_ids)}"
            elif not np.array_equal(values["id"], expected_ids):
                problem = "ids differ from the frame's"
            elif check is not None:
                problem = check(values)
        if problem is not None:
            log.warning("feature shard %s is corrupt (%s): recomputing it", p, problem)
            p.unlink(missing_ok=True)
            _checksum_path(p).unlink(missing_ok=True)
            (self.root / key / META).unlink(missing_ok=True)
            return None
        return values

    def write_shard(self, key: str, i: int, values: Mapping[str, np.ndarray]) -> Path:
        """Write one shard atomically (temp file + ``os.replace``), then its sha256 beside it."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = self.shard_path(key, i)
        p.parent.mkdir(parents=True, exist_ok=True)
        sink = pa.BufferOutputStream()
        pq.write_table(to_arrow(values), sink, compression="zstd")
        data = sink.getvalue().to_pybytes()
        atomic_write_bytes(p, data)
        # After the shard: a crash in between leaves a shard without a checksum
        # (checked by decoding) or with an older one (a mismatch: recomputed).
        atomic_write_bytes(_checksum_path(p), hashlib.sha256(data).hexdigest().encode())
        return p

    def finish(self, key: str, meta: Mapping[str, Any]) -> None:
        """Mark a family complete: write ``_meta.json`` last; sweep stale temp files."""
        d = self.root / key
        atomic_write_bytes(d / META, json.dumps({**meta, "complete": True,
                                                  "created": time.strftime("%Y-%m-%dT%H:%M:%S")},
                                                 indent=1, sort_keys=True).encode())
        cutoff = time.time() - 3600  # older than any live writer's temp file
        for tmp in d.glob("*.tmp-*"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
            except OSError:
                pass

    def save_table(self, table: FeatureTable, families: Mapping[str, str],
                   columns: Sequence[str] | None = None) -> None:
        """Record which family keys and row order make up ``table`` (for :meth:`load`).

        ``columns``: every column the families stored (default ``table.columns``),
        for a table that holds only some of them.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        d = self.root / table.fingerprint
        if (d / TABLE).exists():
            return
        d.mkdir(parents=True, exist_ok=True)
        index = {k: table[k] for k in ("id", "label") if k in table}
        sink = pa.BufferOutputStream()
        pq.write_table(to_arrow(index), sink)
        atomic_write_bytes(d / INDEX, sink.getvalue().to_pybytes())
        atomic_write_bytes(d / TABLE, json.dumps(
            {"families": dict(families), "columns": list(columns or table.columns)}, indent=1).encode())

    def family_costs(self, table_key: str) -> dict[str, dict[str, Any]]:
        """Per family of a saved table: its ``columns`` and compute ``seconds`` (None: not
        recorded, e.g. a cache made before seconds were kept); {} when the table is unknown."""
        try:
            families = json.loads((self.root / table_key / TABLE).read_text())["families"]
        except (OSError, ValueError, KeyError):
            return {}
        out = {}
        for name, key in families.items():
            meta = self.read_meta(key) or {}
            out[name] = {"columns": meta.get("columns", []), "seconds": meta.get("seconds")}
        return out

    def load(self, table_key: str) -> FeatureTable:
        """Reload a table saved by :func:`~dataselect.features.compute_features`.

        Raises
        ------
        CacheError
            When the table or any of its shards is missing or corrupt.
        """
        import pyarrow.parquet as pq

        d = self.root / table_key
        try:
            spec = json.loads((d / TABLE).read_text())
            index = from_arrow(pq.read_table(d / INDEX), pq.read_schema(d / INDEX).names)
        except (OSError, ValueError) as err:
            raise CacheError(f"features: table {table_key} in {self.root} is missing or unreadable ({err})") from err
        cols: dict[str, np.ndarray] = dict(index)
        canon = np.sort(index["id"])
        for name, key in spec["families"].items():
            meta = self.read_meta(key)
            if meta is None:
                raise CacheError(f"features: family {name!r} ({key[:12]}) is incomplete; rerun `dataselect features`")
            parts = []
            for i, (lo, hi) in enumerate(shard_bounds(len(canon), meta["shard_size"])):
                v = self.read_shard(key, i, meta["columns"], canon[lo:hi], FAMILY_CHECKS.get(name))
                if v is None:
                    raise CacheError(f"features: shard {i} of {name!r} ({key[:12]}) is missing or corrupt; "
                                     "rerun `dataselect features`")
                parts.append(v)
            cols.update(align(concat(parts, meta["columns"]), canon, index["id"]))
        return FeatureTable(cols, table_key)


def concat(parts: Sequence[Mapping[str, np.ndarray]], columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Concatenate shard dicts column-wise (``id`` plus ``columns``)."""
    return {c: np.concatenate([p[c] for p in parts]) for c in ["id", *columns]}


def align(values: Mapping[str, np.ndarray], canon_ids: np.ndarray, frame_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Reorder id-sorted ``values`` into ``frame_ids`` order, joining on id.

    Checks the join rather than trusting positions: a mismatch is a store bug
    or a stale shard, never silently misaligned features.
    """
    if not np.array_equal(values["id"], canon_ids):
        raise CacheError("features: cached ids do not match the frame's ids; delete the feature store folder")
    pos = np.searchsorted(canon_ids, frame_ids)
    out = {k: v[pos] for k, v in values.items() if k != "id"}
    if not np.array_equal(values["id"][pos], frame_ids):
        raise CacheError("features: id join failed; delete the feature store folder")
    return out
