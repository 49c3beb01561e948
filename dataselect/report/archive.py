"""A study in the compact form a repository can hold: ``reports/<study>/`` with its trials.

A study folder (``runs/<study>/``) lives on one machine and weighs gigabytes
(features, models, TensorBoard); its evidence is small. :func:`write_archive`
keeps what the report and a later adoption read, per trial of the Tune
experiment, and nothing else:

``trials.parquet``
    one row per trial: its ``params.json``, the last line of Tune's
    ``result.json`` and of ``error.txt`` (:class:`~dataselect.report.results.TrialRecord`),
    the trial-side result, the training key adoption checks, the kept row
    ids in pick order, its eval predictions (``pred``; ``prob_<k>`` as float32,
    the last class stored as its bit distance from one minus the others, so it
    is exact and compresses to almost nothing), and, with a target, the
    subset's target and eval AUC (they need the embeddings, which stay behind).
``eval_rows.parquet``
    the eval rows' ``id`` and ``label`` once, in prediction order.
``pool_rows.parquet``
    every pool row some trial kept, with the columns ``kept.parquet`` holds
    (``label``, ``n_words``, ``perplexity``, ``original_label`` ...), once.
``study.json``
    the study's own, byte for byte.
``archive.json``
    the format version and the sha256 of each file, written last: an archive
    cut short, or edited, is refused (:class:`~dataselect.core.errors.CacheError`).

:class:`Archive` reads it back as the report reads a study folder (the same
``records`` / ``frames`` / ``target_space``), so ``dataselect report
reports/<study>`` rewrites the report with the same numbers; the sweep adopts
its trials (``sweep.trial.reused_archived``). At the families study's scale
(271 trials × 3,872 eval rows, two classes) it is about 5.4 MB, nearly all of it
the probabilities' float32 mantissas (measured on synthetic softmax outputs).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dataselect.core.errors import CacheError, UserError
from dataselect.report.results import StudyFolder, TrialRecord

FORMAT = 1
INDEX_FILE = "archive.json"
TRIALS_FILE = "trials.parquet"
EVAL_FILE = "eval_rows.parquet"
POOL_FILE = "pool_rows.parquet"
META_FILE = "study.json"
FILES = (TRIALS_FILE, EVAL_FILE, POOL_FILE, META_FILE)

PREDICTIONS = "predictions.parquet"
KEPT = "kept.parquet"


def is_archive(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a study archive (its ``archive.json``)."""
    return (Path(path) / INDEX_FILE).is_file()


# --------------------------------------------------------------------------- write
def write_archive(study_dir: str | Path, out: str | Path, *, keys: Mapping[str, str] | None = None) -> Path:
    """Archive the study folder ``study_dir`` into ``out`` (created; its archive files replaced).

    ``keys``: trial -> the training key under which the sweep may adopt it
    (``sweep.trial.adoption_keys``: only trials that ``cache_dir`` adoption
    would accept have one); trials without a key are archived for the report
    only. Every file is written atomically; ``archive.json`` last. Returns ``out``.
    """
    from dataselect.features.store import atomic_write_bytes

    study, out = Path(study_dir), Path(out)
    meta_bytes = (study / META_FILE).read_bytes() if (study / META_FILE).is_file() else b""
    if not meta_bytes:
        raise UserError(f"study_dir: {study} has no {META_FILE}; is it a study folder (runs/<name>)?")
    meta = json.loads(meta_bytes)
    folder = StudyFolder(study, meta)
    records = folder.records()
    ok = [r.trial for r in records if "accuracy" in r.result]
    notes: dict[str, str] = {}
    preds = folder.frames(ok, PREDICTIONS, notes)
    kept = folder.frames(ok, KEPT)
    space = folder.target_space() if meta.get("target") else None
    eval_rows = _eval_rows(preds)
    pool_rows = _pool_rows(kept)
    keys = dict(keys or {})
    rows = []
    for rec in records:
        res = {k: v for k, v in rec.result.items() if k != "config"}  # params.json holds it
        row: dict[str, Any] = {"trial": rec.trial, "params": _dumps(rec.params), "result": _dumps(res),
                               "error": rec.error, "trial_result": _trial_result(study, rec.trial),
                               "training_key": keys.get(rec.trial), "predictions_note": notes.get(rec.trial)}
        if rec.trial in kept:
            k = kept[rec.trial]
            row["kept"] = k["id"].to_numpy(np.int64)
            row["kept_columns"] = _dumps([c for c in k.columns if c != "id"])
            if space is not None:
                row["target_auc"], row["eval_auc"] = space.auc(row["kept"])
        if rec.trial in preds:
            row.update(_encode_predictions(preds[rec.trial], eval_rows))
        rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    blobs = {TRIALS_FILE: _parquet(_trials_table(rows)), EVAL_FILE: _parquet(eval_rows),
             POOL_FILE: _parquet(pool_rows), META_FILE: meta_bytes}
    for name, data in blobs.items():
        atomic_write_bytes(out / name, data)
    index = {"format": FORMAT, "study": meta.get("name", study.name), "trials": len(records),
             "finished": len(ok), "adoptable": sum(1 for r in rows if r["training_key"]),
             "files": {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()}}
    atomic_write_bytes(out / INDEX_FILE, (json.dumps(index, indent=2) + "\n").encode())
    return out


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _trial_result(study: Path, trial: str) -> str | None:
    """``trials/<trial>/result.json``'s result (what an adopted trial takes over), or None."""
    try:
        return _dumps(json.loads((study / "trials" / trial / "result.json").read_text())["result"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _eval_rows(preds: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The eval ``id`` / ``label`` most trials predicted, in their order (stored once)."""
    if not preds:
        return pd.DataFrame({"id": np.zeros(0, np.int64), "label": np.zeros(0, np.int64)})
    seen: dict[bytes, pd.DataFrame] = {}
    count: dict[bytes, int] = {}
    for p in preds.values():
        rows = pd.DataFrame({"id": p["id"].to_numpy(np.int64), "label": p["label"].to_numpy(np.int64)})
        key = rows.to_numpy().tobytes()
        seen.setdefault(key, rows)
        count[key] = count.get(key, 0) + 1
    return seen[max(count, key=count.__getitem__)]


def _pool_rows(kept: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Every kept pool row once; a row kept with other values by two trials is refused."""
    if not kept:
        return pd.DataFrame({"id": np.zeros(0, np.int64)})
    rows = pd.concat(list(kept.values()), ignore_index=True).drop_duplicates()
    dup = rows["id"].duplicated(keep=False)
    if dup.any():
        rid = int(rows.loc[dup, "id"].iloc[0])
        seen = {t: k.loc[k["id"] == rid].iloc[0].to_dict() for t, k in sorted(kept.items())
                if (k["id"] == rid).any()}
        first = next(iter(seen))
        other = next((t for t, v in seen.items() if v != seen[first]), first)
        raise UserError(f"study_dir: pool row {rid} differs between the kept.parquet of trials "
                        f"{first} and {other}; the study mixes two pools and cannot be archived as one")
    return rows.sort_values("id", kind="stable").reset_index(drop=True)


def _encode_predictions(p: pd.DataFrame, eval_rows: pd.DataFrame) -> dict[str, Any]:
    """One trial's predictions as archive cells (see the module docstring)."""
    out: dict[str, Any] = {"pred": p["pred"].to_numpy(np.int16)}
    ids, labels = p["id"].to_numpy(np.int64), p["label"].to_numpy(np.int64)
    if len(ids) != len(eval_rows) or not (np.array_equal(ids, eval_rows["id"].to_numpy())
                                          and np.array_equal(labels, eval_rows["label"].to_numpy())):
        out["pred_ids"], out["pred_labels"] = ids, labels  # another eval than the study's (rare)
    probs = sorted((c for c in p.columns if c.startswith("prob_")), key=lambda c: int(c[5:]))
    if probs:
        cols = [p[c].to_numpy(np.float32) for c in probs]
        out["probs"] = np.stack(cols[:-1]) if len(cols) > 1 else np.zeros((0, len(ids)), np.float32)
        out["prob_last_bits"] = _last_bits(cols[:-1], len(ids)).view(np.int32) - cols[-1].view(np.int32)
        out["n_probs"] = len(cols)
    return out


def _last_bits(others: list[np.ndarray], n: int) -> np.ndarray:
    """float32 ``1 - sum(others)``, summed in class order: what the last probability is nearly."""
    acc = np.zeros(n, np.float32)
    for c in others:
        acc = acc + c
    return np.float32(1.0) - acc


def _trials_table(rows: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    def col(name: str, typ: Any, fn: Any = None) -> Any:
        vals = [r.get(name) for r in rows]
        return pa.array([None if v is None else (fn(v) if fn else v) for v in vals], typ)

    n_probs = max((r.get("n_probs", 0) for r in rows), default=0)
    cols = {
        "trial": col("trial", pa.string()), "params": col("params", pa.string()),
        "result": col("result", pa.string()), "error": col("error", pa.string()),
        "trial_result": col("trial_result", pa.string()), "training_key": col("training_key", pa.string()),
        "predictions_note": col("predictions_note", pa.string()),
        "kept": col("kept", pa.list_(pa.int64())), "kept_columns": col("kept_columns", pa.string()),
        "target_auc": col("target_auc", pa.float64()), "eval_auc": col("eval_auc", pa.float64()),
        "pred": col("pred", pa.list_(pa.int16())),
        "pred_ids": col("pred_ids", pa.list_(pa.int64())), "pred_labels": col("pred_labels", pa.list_(pa.int64())),
    }
    for k in range(max(n_probs - 1, 0)):
        cols[f"prob_{k}"] = pa.array([None if r.get("probs") is None or len(r["probs"]) <= k else r["probs"][k]
                                      for r in rows], pa.list_(pa.float32()))
    cols["prob_last_bits"] = col("prob_last_bits", pa.list_(pa.int32()))
    cols["n_probs"] = col("n_probs", pa.int16())
    return pa.table(cols)


def _parquet(table: Any) -> bytes:
    """zstd parquet; probabilities byte-stream-split, not dictionary-coded (a float32 softmax output's
    low bytes are noise: split from its sign and exponent they cost 0.7 MB less at families scale)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    probs = [f"{c}.list.element" for c in table.column_names if c.startswith("prob_") and c != "prob_last_bits"]
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", compression_level=9, use_dictionary=False,
                   use_byte_stream_split=probs or False)
    return buf.getvalue()


# --------------------------------------------------------------------------- read
@dataclass(frozen=True)
class ArchivedTrial:
    """One archived trial, as adoption needs it."""

    trial: str
    seed: int
    result: dict[str, Any] | None
    """The trial-side result (``trials/<trial>/result.json``'s), None if it had none."""
    training_key: str | None
    kept: np.ndarray | None
    predictions: pd.DataFrame | None


class Archive:
    """A study archive read back: the same reader interface as :class:`~dataselect.report.results.StudyFolder`.

    Opening checks every file against ``archive.json`` (a damaged or
    half-written archive is a :class:`~dataselect.core.errors.CacheError`
    naming the file). ``tensorboard`` is None: the logs stay with the runs.
    """

    tensorboard = None

    def __init__(self, path: str | Path) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        try:
            index = json.loads((self.path / INDEX_FILE).read_text())
        except (OSError, ValueError) as err:
            raise CacheError(f"archive: cannot read {self.path / INDEX_FILE} ({err})") from err
        if index.get("format") != FORMAT:
            raise CacheError(f"archive: {self.path / INDEX_FILE} is format {index.get('format')!r}; "
                             f"this dataselect reads format {FORMAT}")
        blobs = {}
        for name in FILES:
            try:
                blobs[name] = (self.path / name).read_bytes()
            except OSError as err:
                raise CacheError(f"archive: cannot read {self.path / name} ({err})") from err
            if hashlib.sha256(blobs[name]).hexdigest() != (index.get("files") or {}).get(name):
                raise CacheError(f"archive: {self.path / name} is not the file {INDEX_FILE} lists (sha256 "
                                 "differs): damaged or edited; write the archive again with `dataselect archive`")
        self.meta: dict[str, Any] = json.loads(blobs[META_FILE])
        self._rows = _rows_of(pq.read_table(io.BytesIO(blobs[TRIALS_FILE])))
        self._eval = pq.read_table(io.BytesIO(blobs[EVAL_FILE])).to_pandas()
        self._pool = pq.read_table(io.BytesIO(blobs[POOL_FILE])).to_pandas().set_index("id", drop=False)

    @property
    def trials(self) -> list[str]:
        return list(self._rows)

    @property
    def eval_rows(self) -> pd.DataFrame:
        return self._eval

    # The report's reader interface ------------------------------------------------------
    def records(self) -> list[TrialRecord]:
        return [TrialRecord(r["trial"], json.loads(r["params"]), json.loads(r["result"]), r["error"])
                for r in self._rows.values()]

    def frames(self, trials: list[str], name: str, unreadable: dict[str, str] | None = None
               ) -> dict[str, pd.DataFrame]:
        """Each trial's ``predictions.parquet`` or ``kept.parquet`` as the sweep wrote it."""
        out = {}
        for t in trials:
            row = self._rows.get(t)
            if row is None:
                continue
            if name == PREDICTIONS:
                if row["predictions_note"] is not None and unreadable is not None:
                    unreadable[t] = row["predictions_note"]
                if (p := self._predictions(row)) is not None:
                    out[t] = p
            elif name == KEPT and (k := self._kept(row)) is not None:
                out[t] = k
        return out

    def target_space(self) -> ArchivedDistances | None:
        aucs = {_ids_digest(r["kept"]): (float(r["target_auc"]), float(r["eval_auc"]))
                for r in self._rows.values() if r["kept"] is not None and r["target_auc"] is not None}
        return ArchivedDistances(aucs) if aucs else None

    # Adoption -------------------------------------------------------------------------
    def trial(self, name: str) -> ArchivedTrial | None:
        """The archived trial ``name`` if it finished (else None)."""
        row = self._rows.get(name)
        if row is None or "accuracy" not in json.loads(row["result"]):
            return None
        params = json.loads(row["params"])
        return ArchivedTrial(name, int(params.get("run", params)["seed"]),
                             json.loads(row["trial_result"]) if row["trial_result"] else None,
                             row["training_key"], None if row["kept"] is None else np.asarray(row["kept"], np.int64),
                             self._predictions(row))

    def _predictions(self, row: dict[str, Any]) -> pd.DataFrame | None:
        if row["pred"] is None:
            return None
        own = row["pred_ids"] is not None
        ids = np.asarray(row["pred_ids"] if own else self._eval["id"], np.int64)
        table: dict[str, np.ndarray] = {
            "id": ids, "label": np.asarray(row["pred_labels"] if own else self._eval["label"], np.int64),
            "pred": np.asarray(row["pred"], np.int64)}
        n_probs = row["n_probs"] or 0
        if n_probs:
            others = [np.asarray(row[f"prob_{k}"], np.float32) for k in range(n_probs - 1)]
            last = (_last_bits(others, len(ids)).view(np.int32)
                    - np.asarray(row["prob_last_bits"], np.int32)).view(np.float32)
            for k, c in enumerate([*others, last]):
                table[f"prob_{k}"] = c
        return pd.DataFrame(table)

    def _kept(self, row: dict[str, Any]) -> pd.DataFrame | None:
        if row["kept"] is None:
            return None
        cols = ["id", *json.loads(row["kept_columns"])]
        return self._pool.loc[np.asarray(row["kept"], np.int64), cols].reset_index(drop=True)


def _rows_of(table: Any) -> dict[str, dict[str, Any]]:
    """Trial -> its cells: a list cell as a numpy array, a null cell as None (pandas would make it NaN)."""
    import pyarrow as pa

    cols: dict[str, list[Any]] = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if pa.types.is_list(col.type):
            vals = col.values.to_numpy(zero_copy_only=False)
            offs = col.offsets.to_numpy()
            valid = col.is_valid().to_numpy(zero_copy_only=False)
            cols[name] = [vals[offs[i]:offs[i + 1]] if valid[i] else None for i in range(len(col))]
        else:
            cols[name] = col.to_pylist()
    return {t: {n: c[i] for n, c in cols.items()} for i, t in enumerate(cols["trial"])}


@functools.lru_cache(maxsize=4)
def _open_cached(path: str, stamp: tuple[int, int]) -> Archive:
    return Archive(path)


def open_archive(path: str | Path) -> Archive:
    """:class:`Archive` at ``path``, opened once per process while ``archive.json`` is unchanged
    (every trial of a sweep that adopts from it asks)."""
    try:
        st = (Path(path) / INDEX_FILE).stat()
    except OSError as err:
        raise CacheError(f"archive: no study archive at {path} ({INDEX_FILE}: {err.strerror}); write one "
                         "with `python -m dataselect archive STUDY_DIR --out DIR`") from err
    return _open_cached(str(Path(path).resolve()), (st.st_mtime_ns, st.st_size))


@dataclass(frozen=True)
class ArchivedDistances:
    """The archived subsets' target and eval AUCs, looked up by the subset's ids (in pick order):
    the report's :class:`~dataselect.report.subsets.TargetSpace` without its embeddings."""

    aucs: Mapping[bytes, tuple[float, float]]

    def auc(self, ids: np.ndarray, seed: int = 0) -> tuple[float, float]:
        return self.aucs.get(_ids_digest(ids), (float("nan"), float("nan")))


def _ids_digest(ids: Any) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(ids, np.int64)).tobytes()).digest()

