"""Reading a dataset's splits: local TSV/CSV/JSONL/parquet files and hub datasets.

Every reader returns the split's rows as they are (strings), with
``attrs["origin"]`` saying where its rows start, and refuses what it cannot
read in one :class:`~dataselect.core.errors.DataError` line naming the file,
the line (and row) and the column: non-UTF-8 bytes, a headerless file read
as if it had a header, ragged fields, repeated or non-integer ids, an empty
split. :mod:`dataselect.core.data` turns the rows into the ``id, text,
label`` table.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from dataselect.core.config import DatasetConfig, looks_like_hub_id
from dataselect.core.errors import DataError, first_line

FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
"""File suffix -> format read by :func:`read_file`."""


def is_local(source: str) -> bool:
    return source.startswith((".", "/", "~")) or not looks_like_hub_id(source)


def _split_path(cfg: DatasetConfig, split: str, field: str) -> Path:
    src = Path(cfg.source).expanduser()
    if not src.exists():
        raise DataError(f"dataset.source: path does not exist: {src}")
    if src.is_file():
        if field == "train_split":
            return src
        p = Path(split).expanduser()
        if not p.is_file():
            raise DataError(
                f"dataset.{field}: {split!r} is not a file; with a single-file source the eval split must be a path"
            )
        return p
    direct = src / split
    if direct.is_file():
        return direct
    found = sorted(p for p in src.glob(f"{split}.*") if p.suffix in FORMATS)
    if not found:
        raise DataError(
            f"dataset.{field}: no {split}.{{tsv,csv,jsonl,parquet}} in {src}"
        )
    return found[0]


def read_split(cfg: DatasetConfig, split: str, field: str) -> pd.DataFrame:
    path = _split_path(cfg, split, field)
    names = list(cfg.columns or [cfg.text_column, cfg.label_column])
    df, fmt = read_file(path, cfg.format, cfg.header, names, f"dataset.{field}")
    for col, key in ((cfg.text_column, "text_column"), (cfg.label_column, "label_column"),
                     (cfg.id_column, "id_column")):
        if col is not None and col not in df.columns:
            hint = _headerless_hint(df, fmt) if cfg.header else ""
            raise DataError(f"dataset.{key}: column {col!r} not in {path.name}; columns: "
                            f"{_short(list(df.columns))}{hint}")
    o = origin(df)
    df["_id"] = _ids(df, cfg.id_column, o["file"], o["first_line"], field)
    return df


def read_file(path: Path, fmt: str, header: bool, names: list[str], where: str) -> tuple[pd.DataFrame, str]:
    """One TSV/CSV/JSONL/parquet file as a frame of strings, checked; ``(frame, format)``.

    ``fmt`` ``auto`` goes by the suffix; ``names`` name the columns of a
    headerless TSV/CSV (``header`` false). Non-UTF-8 bytes, an unreadable
    file, no rows (or a header alone) are a :class:`DataError` that starts
    with ``where`` (``dataset.train_split``, ``target.path``) and names the
    line. The frame's ``attrs["origin"]`` says where its rows start, for
    messages about a row.
    """
    section = where.split(".")[0]
    fmt = fmt if fmt != "auto" else FORMATS.get(path.suffix)
    if fmt is None:
        raise DataError(f"{section}.format: cannot tell the format of {path.name}; set tsv|csv|jsonl|parquet")
    if fmt != "parquet":
        _check_utf8(path, fmt, where, header)
    headerless = not header and fmt in ("tsv", "csv")
    if headerless:
        _check_field_count(path, fmt, section, names)
    try:
        if fmt == "tsv":
            # SST-2 sentences hold bare quotes: no quoting at all (see its README).
            df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False,
                             na_values=[""], dtype=str, encoding="utf-8-sig",
                             header=None if headerless else "infer", names=names if headerless else None)
        elif fmt == "csv":
            df = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=str, encoding="utf-8-sig",
                             header=None if headerless else "infer", names=names if headerless else None)
        elif fmt == "jsonl":
            df = pd.read_json(path, lines=True, dtype=False, encoding="utf-8-sig")
        else:
            df = pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{where}: cannot read {path} as {fmt}: {first}") from err
    if not isinstance(df, pd.DataFrame):  # read_json of a bare value
        raise DataError(f"{where}: {path.name} does not hold one JSON object per line")
    df.columns = [str(c) for c in df.columns]
    if df.empty:
        what = "only a header row" if len(df.columns) and fmt in ("tsv", "csv") and header else "no rows"
        raise DataError(f"{where}: {path.name} holds {what}; it needs rows")
    df = df.copy()
    # Data rows start on line 2 below a header, on line 1 without one (JSONL: line 1).
    first_line = 2 if fmt in ("tsv", "csv") and header else 1
    df.attrs["origin"] = {"file": path.name, "first_line": first_line if fmt != "parquet" else None}
    return df, fmt


def _short(values: list[str], limit: int = 60) -> str:
    out = [v if len(v) <= limit else v[: limit - 3] + "..." for v in values[:10]]
    return repr(out) + (f" (+{len(values) - 10} more)" if len(values) > 10 else "")


def _check_utf8(path: Path, fmt: str, owner: str, header: bool) -> None:
    """Refuse non-UTF-8 bytes with the line and column they sit in."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
        return
    except UnicodeDecodeError as err:
        pos = err.start
    line = data.count(b"\n", 0, pos) + 1
    start = data.rfind(b"\n", 0, pos) + 1
    where = f"line {line}"
    if fmt in ("tsv", "csv"):
        sep = b"\t" if fmt == "tsv" else b","
        j = data.count(sep, start, pos)
        col = f"column {j + 1}"
        if header and line > 1:
            head = data[: data.find(b"\n")].decode("utf-8", errors="replace").rstrip("\r")
            cols = head.lstrip("\ufeff").split(sep.decode())
            if j < len(cols):
                col = f"column {cols[j]!r}"
        row = line - 2 if header else line - 1
        where += f" (row {row}), {col}" if row >= 0 else f" (the header), {col}"
    raise DataError(f"{owner}: {path.name} {where}: byte 0x{data[pos]:02x} is not UTF-8; "
                    "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")


def _check_field_count(path: Path, fmt: str, section: str, names: list[str]) -> None:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        first = fh.readline().rstrip("\r\n")
    n = len(first.split("\t")) if fmt == "tsv" else len(next(csv.reader([first]), []))
    if first and n != len(names):
        raise DataError(f"{section}.columns: {path.name} line 1 has {n} fields but the columns are "
                        f"{names}; set {section}.columns to name all {n} in order")


def _looks_like_value(name: str, column: pd.Series) -> bool:
    name = name.strip()
    if not name:
        return False
    try:
        float(name)
        return True  # column names are rarely numbers; labels often are
    except ValueError:
        pass
    if len(name) > 40 or len(name.split()) >= 4:
        return True  # a sentence, not a column name
    return bool((column.head(1000).astype(str).str.strip() == name).any())


def _headerless_hint(df: pd.DataFrame, fmt: str) -> str:
    """Say so when a TSV/CSV's first row looks like data rather than a header."""
    if fmt not in ("tsv", "csv") or df.empty:
        return ""
    cols = list(df.columns)
    if any(_looks_like_value(str(c), df[c]) for c in cols):
        return ("; its first row looks like data, not a header: set dataset.header: false "
                "(columns are then [text_column, label_column], or name them in dataset.columns)")
    return ""


def origin(raw: pd.DataFrame) -> dict:
    return raw.attrs.get("origin") or {}


def at(raw: pd.DataFrame | dict, i: int, *, row: bool = True) -> str:
    """``train.tsv line 5 (row 3)`` for the i-th data row of a source split (frame or origin).

    ``row=False`` leaves the row out, for messages that already name it.
    """
    o = raw if isinstance(raw, dict) else origin(raw)
    if not o:
        return f"row {i}"
    line = o.get("first_line")
    if line:
        return f"{o['file']} line {line + i}" + (f" (row {i})" if row else "")
    return f"{o['file']} row {i}"


def _ids(df: pd.DataFrame, column: str | None, file: str, first_line: int | None, field: str) -> np.ndarray:
    if column is None:
        return np.arange(len(df), dtype=np.int64)
    vals = pd.to_numeric(df[column], errors="coerce")
    bad = vals.isna() | (vals != vals.round())
    origin = {"file": file, "first_line": first_line}
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"dataset.id_column: {at(origin, i)}, column {column!r}: id "
                        f"{df[column].iloc[i]!r} is not an integer")
    ids = vals.to_numpy(np.int64)
    check_unique_ids(ids, column, origin)
    return ids


def check_unique_ids(ids: np.ndarray, column: str, origin: dict) -> None:
    dup = pd.Series(ids).duplicated(keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        j = int(np.flatnonzero(ids == ids[i])[0])
        raise DataError(f"dataset.id_column: {at(origin, i)}, column {column!r}: id {int(ids[i])} repeats "
                        f"row {j} ({int(dup.sum())} repeated ids); ids must be unique")


def read_hub(cfg: DatasetConfig) -> tuple[pd.DataFrame, pd.DataFrame, list[str] | None]:
    """Load a hub dataset (``glue/sst2`` → ``load_dataset("glue", "sst2")``)."""
    import datasets

    path, _, name = cfg.source.partition("/")
    args = (path, name) if name else (path,)
    try:
        ds = datasets.load_dataset(*args)
    except Exception as err:  # noqa: BLE001 - hub errors come in many types; all mean "not loadable"
        raise DataError(
            f"dataset.source: cannot load hub dataset {cfg.source!r} ({first_line(err)[:300]}); "
            "offline, point dataset.source at a local folder or file (e.g. ../shared/data/sst2)"
        ) from err
    names = None
    for split, field in ((cfg.train_split, "train_split"), (cfg.eval_split, "eval_split")):
        if split not in ds:
            raise DataError(f"dataset.{field}: split {split!r} not in {cfg.source}; splits: {list(ds)}")
    feat = ds[cfg.train_split].features.get(cfg.label_column)
    if feat is not None and hasattr(feat, "names"):
        names = list(feat.names)
    out = []
    for split, field in ((cfg.train_split, "train_split"), (cfg.eval_split, "eval_split")):
        df = ds[split].to_pandas()
        for col, key in ((cfg.text_column, "text_column"), (cfg.label_column, "label_column")):
            if col not in df.columns:
                raise DataError(f"dataset.{key}: column {col!r} not in {cfg.source}:{split}; columns: {list(df.columns)}")
        df.attrs["origin"] = {"file": f"{cfg.source}:{split}", "first_line": None}
        if "idx" in df.columns:
            df["_id"] = df["idx"].astype(np.int64)
            check_unique_ids(df["_id"].to_numpy(), "idx", df.attrs["origin"])
        else:
            df["_id"] = np.arange(len(df), dtype=np.int64)
        if field == "eval_split" and (df[cfg.label_column] < 0).all():
            raise DataError(f"dataset.eval_split: split {split!r} of {cfg.source} has no labels (test split?)")
        out.append(df)
    return out[0], out[1], names


