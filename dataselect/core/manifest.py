"""Selection manifests: one parquet file per (selector, params, budget, seed, features).

A manifest records which dataset rows a selector chose and how: columns
``id`` (int64 dataset row id), ``rank`` (int32 pick order) and ``score``
(float64, null when the selector does not score), plus JSON schema metadata
with everything needed to reproduce it. :func:`selection_key` names the file,
so a rerun with the same inputs finds and reuses it. No timestamps are
written: the same inputs give byte-identical files.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataselect.core.errors import CacheError
from dataselect.core.selection import Selection

__all__ = [
    "MANIFEST_VERSION",
    "Manifest",
    "ManifestError",
    "ManifestUnreadableError",
    "read_manifest",
    "selection_key",
    "write_manifest",
]

MANIFEST_VERSION = 1
_META_KEY = b"dataselect.manifest"  # a file-format name, not the module path: never rename
_SCHEMA = pa.schema([("id", pa.int64()), ("rank", pa.int32()), ("score", pa.float64())])


class ManifestError(CacheError):
    """A manifest file is missing, truncated, corrupt or inconsistent: recomputing it
    gives a good one (the select stage does, with a warning)."""


class ManifestUnreadableError(ManifestError):
    """A manifest file could not be read at all (permissions, an I/O error): nothing
    says it is corrupt, and recomputing would not make the file readable."""


@dataclass(frozen=True)
class Manifest:
    """A manifest read back from disk.

    Attributes
    ----------
    ids : ndarray of int64, shape (budget,)
        Dataset row ids in pick order.
    scores : ndarray of float64, shape (budget,), or None
    meta : dict
        ``version``, ``selector``, ``params``, ``budget``, ``seed``,
        ``fraction``, ``features`` (feature-table fingerprint), ``info``, ``key``.
    """

    ids: np.ndarray
    scores: np.ndarray | None
    meta: dict[str, Any]


def _canonical(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-serialisable (finite numbers, str, list, dict): {exc}") from exc


def selection_key(
    selector: str, params: Mapping[str, Any], budget: int, seed: int, features: str,
    code: Mapping[str, int] | None = None, streams: str | None = None,
) -> str:
    """Stable sha256 hex of everything that determines a selection.

    ``features`` is the feature table's fingerprint (its cache key).
    ``params`` should be the resolved parameters (``Selector.params()``:
    defaults included, so changing a default changes the key). ``code`` is
    ``Selector.code_versions()``: the versions of the selector code other than
    1; it enters the key only when not empty, so a manifest of version-1 code
    keeps the key it had before versions existed, and a bumped version gets a
    new one (HF ``datasets`` fingerprints a transform's code the same way).
    ``streams`` is the random-stream mode (``grid.selector_streams``) when it changed
    the picks (a seeded selector drawing from its own stream: ``"own"``); None, or
    ``"shared"``, enters nothing, so manifests of the one shared stream keep their keys.
    Non-JSON values raise ``TypeError`` rather than fall back to an unstable key.
    """
    payload = {
        "version": MANIFEST_VERSION,
        "selector": selector,
        "params": dict(params),
        "budget": int(budget),
        "seed": int(seed),
        "features": features,
    }
    if code:
        payload["code"] = {str(k): int(v) for k, v in code.items()}
    if streams not in (None, "shared"):
        payload["streams"] = str(streams)
    return sha256(_canonical(payload, "selection key").encode()).hexdigest()


def write_manifest(
    path: str | os.PathLike[str],
    selection: Selection,
    *,
    selector: str,
    params: Mapping[str, Any],
    budget: int,
    seed: int,
    features: str,
    ids: np.ndarray | None = None,
    fraction: float | None = None,
    code: Mapping[str, int] | None = None,
    streams: str | None = None,
) -> Path:
    """Write ``selection`` to ``path`` atomically and return the path.

    Parameters
    ----------
    path : path-like
        Target ``.parquet`` file; its directory must exist.
    selection : Selection
    selector, params, budget, seed, features
        Selector name, resolved params, budget, seed and the feature
        table's fingerprint (its cache key): stored in the metadata and hashed into ``key``.
    ids : ndarray of int64, shape (n,), optional
        Dataset row id of every feature-table position; default: the
        positions themselves.
    fraction : float, optional
        Budget as a fraction of the pool, for reports.
    code : mapping of str to int, optional
        The selector's code versions other than 1 (``Selector.code_versions()``):
        in the metadata and the key only when not empty.
    streams : str, optional
        The random-stream mode when it changed the picks (:func:`selection_key`):
        in the metadata and the key only then.

    Notes
    -----
    The file is written to a temporary name in the same directory and moved
    into place with ``os.replace``, so readers never see a partial file and a
    crash leaves no half-written manifest under the final name.
    """
    path = Path(path)
    idx = selection.indices
    row_ids = idx if ids is None else np.asarray(ids, dtype=np.int64)[idx]
    scores = None if selection.scores is None else pa.array(selection.scores, pa.float64())
    table = pa.table(
        {
            "id": pa.array(row_ids, pa.int64()),
            "rank": pa.array(np.arange(len(idx), dtype=np.int32), pa.int32()),
            "score": scores if scores is not None else pa.nulls(len(idx), pa.float64()),
        },
        schema=_SCHEMA,
    )
    meta = {
        "version": MANIFEST_VERSION,
        "selector": selector,
        "params": dict(params),
        "budget": int(budget),
        "seed": int(seed),
        "fraction": None if fraction is None else float(fraction),
        "features": features,
        "info": selection.info,
        "key": selection_key(selector, params, budget, seed, features, code, streams),
    }
    if code:
        meta["code"] = {str(k): int(v) for k, v in code.items()}
    if streams not in (None, "shared"):
        meta["streams"] = str(streams)
    table = table.replace_schema_metadata({_META_KEY: _canonical(meta, "manifest metadata")})
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate a manifest.

    Raises
    ------
    ManifestError
        Missing, truncated or corrupt file; wrong columns; metadata missing
        or inconsistent with the rows (count, ranks, duplicate ids).
    ManifestUnreadableError
        The file could not be read (a permission or I/O error from the system,
        which carries an errno; parquet's own decoding errors carry none).
    """
    path = Path(path)
    try:
        table = pq.read_table(path)
    except FileNotFoundError as exc:
        raise ManifestError(f"manifest {path} does not exist") from exc
    except OSError as exc:
        if exc.errno is not None:
            raise ManifestUnreadableError(f"manifest {path} cannot be read "
                                          f"({type(exc).__name__}: {exc})") from exc
        raise ManifestError(f"manifest {path} is corrupt or truncated: {exc}") from exc
    except pa.ArrowException as exc:
        raise ManifestError(f"manifest {path} is corrupt or truncated: {exc}") from exc
    if not table.schema.remove_metadata().equals(_SCHEMA):
        raise ManifestError(
            f"manifest {path} has columns {table.schema.remove_metadata()}; expected {_SCHEMA}"
        )
    raw = (table.schema.metadata or {}).get(_META_KEY)
    if raw is None:
        raise ManifestError(f"manifest {path} has no {_META_KEY.decode()!r} metadata")
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise ManifestError(f"manifest {path} has unreadable metadata: {exc}") from exc
    ids = table.column("id").to_numpy().astype(np.int64, copy=False)
    ranks = table.column("rank").to_numpy()
    score_col = table.column("score")
    scores = None if score_col.null_count == len(score_col) else score_col.to_numpy()
    if meta.get("version") != MANIFEST_VERSION:
        raise ManifestError(
            f"manifest {path} has version {meta.get('version')!r}; expected {MANIFEST_VERSION}"
        )
    if meta.get("budget") != len(ids):
        raise ManifestError(f"manifest {path} holds {len(ids)} rows; metadata budget is {meta.get('budget')}")
    if not np.array_equal(ranks, np.arange(len(ids))):
        raise ManifestError(f"manifest {path} ranks are not 0..{len(ids) - 1} in order")
    if len(np.unique(ids)) != len(ids):
        raise ManifestError(f"manifest {path} repeats row ids")
    return Manifest(ids=ids, scores=scores, meta=meta)
