"""Labelled text datasets: one loader, one table shape.

Every source — a hub id (``glue/sst2`` through ``datasets.load_dataset``)
or a local TSV/CSV/JSONL/parquet file — becomes a :class:`TextDataset`
whose splits are DataFrames with exactly ``id`` (int64), ``text`` (str)
and ``label`` (int64, ``0..K-1``). ``id`` is the row's position in the
source split, kept through pool subsampling, so every feature, manifest
and result can be traced back to a source row.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dataselect.core.config import DatasetConfig, LabelNoiseConfig, TargetConfig
from dataselect.core.errors import DataError
from dataselect.core.readers import at, is_local, origin, read_hub, read_split
from dataselect.core.target import NO_LABEL, TargetSet

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class DuplicateReport:
    """Repeated texts in a split: reported, never silently dropped."""

    n_repeated_rows: int
    """Rows whose text already appeared earlier in the split."""
    n_conflicting_texts: int
    """Distinct texts that appear with more than one label."""


@dataclass(frozen=True)
class TextDataset:
    """A train pool and an eval split in the ``id, text, label`` shape."""

    train: pd.DataFrame
    eval: pd.DataFrame
    label_names: list[str]
    fingerprint: str
    duplicates: DuplicateReport
    source: str
    noise: pd.DataFrame | None = None
    """Rows whose pool label was flipped (``id``, ``original_label``, ``noisy_label``), or None."""
    target: TargetSet | None = None
    """The target the study selects toward (``target:``), or None."""
    holdout: dict[str, Any] | None = None
    """What the holdout rule took out of the train split: ``eval_sentences``,
    ``target_sentences``, ``validation_sentences``, ``removed_rows`` (sentences and
    their phrases), ``pool_before``, ``pool_after`` (before ``pool_size``), ``match``."""
    validation: pd.DataFrame | None = None
    """The validation holdout (``dataset.validation_holdout``): whole train sentences
    disjoint from the eval set and the pool, ``id`` ``-1 - train id``; None without one."""

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def held_out_eval_id(train_id: np.ndarray) -> np.ndarray:
    """Eval id of a train row moved to the eval set (``-1 - train id``): apart from the
    eval split's own ids, and traceable back to the train row."""
    return -1 - np.asarray(train_id, dtype=np.int64)


def frame_fingerprint(df: pd.DataFrame, *, labels: bool = True) -> str:
    """sha256 over ids, texts and (unless ``labels=False``) labels.

    Feature families read texts only, so their cache key leaves labels out:
    a label-noise study on the same pool reuses the clean study's features.
    """
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(df["id"].to_numpy(np.int64)).tobytes())
    if labels:
        h.update(np.ascontiguousarray(df["label"].to_numpy(np.int64)).tobytes())
    for t in df["text"]:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def find_duplicates(df: pd.DataFrame) -> DuplicateReport:
    repeated = int(df["text"].duplicated().sum())
    labels_per_text = df.groupby("text", sort=False)["label"].nunique()
    return DuplicateReport(repeated, int((labels_per_text > 1).sum()))


def load_dataset(cfg: DatasetConfig, target: TargetConfig | None = None) -> TextDataset:
    """Load, validate and (optionally) subsample the configured dataset (and its target).

    Order: read and check both splits; take out the held-out sentences and
    their phrases (``cfg.eval_holdout``, then a ``holdout`` target, then
    ``cfg.validation_holdout``, all under ``cfg.holdout_match``) and add the
    eval ones to the eval set; subsample the pool (``pool_size``) and the
    eval set (``eval_size``); flip labels (``label_noise``).

    Raises
    ------
    DataError
        Missing file or column, empty text, missing label, a class with no
        rows, a target that cannot be read; the message names the split (or
        ``target``), column and row.
    """
    if is_local(cfg.source):
        raw_train = read_split(cfg, cfg.train_split, "train_split")
        raw_eval = read_split(cfg, cfg.eval_split, "eval_split")
    else:
        raw_train, raw_eval, hub_names = read_hub(cfg)
        if cfg.label_names is None and hub_names:
            cfg = cfg.model_copy(update={"label_names": hub_names})

    names, to_int = _label_mapping(cfg, raw_train[cfg.label_column])
    train = _to_table(raw_train, cfg, to_int, "train")
    evalf = _to_table(raw_eval, cfg, to_int, "eval")
    _check_classes(train, names, "train", origin(raw_train))
    train, evalf, held, holdout, removed_ids = _apply_holdout(train, evalf, cfg, target)
    if holdout is not None:
        _check_classes(train, names, "train pool after the holdout", origin(raw_train))
    if cfg.pool_size is not None and cfg.pool_size < len(train):
        train = _sample(train, cfg.pool_size, cfg.pool_seed)
        _check_classes(train, names, "train pool (dataset.pool_size)", origin(raw_train))
    if cfg.eval_size is not None and cfg.eval_size < len(evalf):
        evalf = _sample(evalf, cfg.eval_size, cfg.pool_seed)
    # Counted on the rows the study uses (the pool), not the whole file.
    dups = find_duplicates(train)
    if dups.n_repeated_rows:
        log.warning(
            "dataset.train: %d rows repeat an earlier text (%d texts with conflicting labels); kept",
            dups.n_repeated_rows,
            dups.n_conflicting_texts,
        )
    noise = None
    if cfg.label_noise is not None:
        train, noise = add_label_noise(train, cfg.label_noise, len(names))
    validation = held.get("validation")
    # The validation rows enter the key only when there are some: a study without keeps its key.
    parts = [frame_fingerprint(train), frame_fingerprint(evalf),
             *([frame_fingerprint(validation)] if validation is not None else [])]
    fp = hashlib.sha256("".join(parts).encode()).hexdigest()
    tset = _target(target, cfg, train, held.get("target"), to_int, evalf, removed_ids)
    return TextDataset(train, evalf, names, fp, dups, cfg.source, noise, tset, holdout, validation)


def _apply_holdout(train: pd.DataFrame, evalf: pd.DataFrame, cfg: DatasetConfig, target: TargetConfig | None,
                   ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame], dict[str, Any] | None,
                              np.ndarray]:
    """(pool, eval, held-out ``target`` / ``validation`` rows, what was taken, train ids taken)
    after the holdout rule. Draws in a fixed order, eval then target then validation, so a
    draw added later never moves the earlier ones."""
    from dataselect.core.holdout import split_holdout

    draws: dict[str, tuple[str, Any]] = {}
    if cfg.eval_holdout is not None:
        draws["eval"] = ("dataset.eval_holdout", cfg.eval_holdout)
    if target is not None and target.holdout is not None:
        draws["target"] = ("target.holdout", target.holdout)
    if cfg.validation_holdout is not None:
        draws["validation"] = ("dataset.validation_holdout", cfg.validation_holdout)
    if not draws:
        return train, evalf, {}, None, np.zeros(0, np.int64)
    try:
        held, removed = split_holdout(train["text"].tolist(), [(h.sentences, h.seed) for _, h in draws.values()],
                                      cfg.holdout_match)
    except ValueError as err:
        raise DataError(f"{' + '.join(f'{f}.sentences' for f, _ in draws.values())}: {err}") from err
    rows = dict(zip(draws, held, strict=True))
    if "eval" in rows:
        moved = train.iloc[rows["eval"]]
        evalf = pd.concat([evalf, moved.assign(id=held_out_eval_id(moved["id"]))], ignore_index=True)
    out = {}
    if "target" in rows:
        out["target"] = train.iloc[rows["target"]].reset_index(drop=True)
    if "validation" in rows:
        kept = train.iloc[rows["validation"]]
        out["validation"] = kept.assign(id=held_out_eval_id(kept["id"])).reset_index(drop=True)
    n = {k: (draws[k][1].sentences if k in draws else 0) for k in ("eval", "target", "validation")}
    info = {"eval_sentences": n["eval"], "target_sentences": n["target"],
            "validation_sentences": n["validation"], "removed_rows": int(removed.sum()),
            "pool_before": len(train), "pool_after": int(len(train) - removed.sum()),
            "match": cfg.holdout_match}
    log.info("holdout: %d whole sentences held out (eval %d, target %d, validation %d; %s key) with their "
             "phrases: %d of %d train rows out of the pool, %d left", sum(n.values()), n["eval"], n["target"],
             n["validation"], cfg.holdout_match, info["removed_rows"], len(train), info["pool_after"])
    taken = train["id"].to_numpy(np.int64)[removed]
    return train[~removed].reset_index(drop=True), evalf, out, info, taken


def _target(target: TargetConfig | None, cfg: DatasetConfig, pool: pd.DataFrame,
            held: pd.DataFrame | None, to_int: dict[str, int], evalf: pd.DataFrame,
            taken: np.ndarray) -> TargetSet | None:
    """The target rows of ``target`` (None: no target), with how many also sit in the pool
    and in the eval set (``transductive``), and how many of its granted labels are eval labels.

    ``taken``: train ids the holdout rule took out of the pool; a ``split`` target of
    the train split loses them (the held-out eval and validation sentences and their
    phrases), so it hands no held-out eval text to a selector.
    """
    if target is None:
        return None
    from dataselect.core.target import (
        count_in_pool,
        granted_labels,
        in_texts,
        read_target_path,
        target_frame,
    )

    info: dict[str, Any] = {}
    if held is not None:
        frame = target_frame(held["id"].to_numpy(), held["text"], held["label"].to_numpy())
        source = "holdout"
    elif target.split is not None:
        if is_local(cfg.source):
            raw = read_split(cfg, target.split, "eval_split" if target.split == cfg.eval_split
                              else "train_split" if target.split == cfg.train_split else "target_split")
        elif target.split in (cfg.train_split, cfg.eval_split):
            raw_train, raw_eval, _ = read_hub(cfg)
            raw = raw_train if target.split == cfg.train_split else raw_eval
        else:
            raise DataError(f"target.split: {target.split!r}: with a hub source only the dataset's "
                            f"train_split or eval_split can be the target")
        keys = raw[cfg.label_column].astype(str).str.strip() if cfg.label_column in raw else None
        labels = None if keys is None else keys.map(to_int).fillna(NO_LABEL).to_numpy(np.int64)
        frame = target_frame(raw["_id"].to_numpy(), raw[cfg.text_column].fillna(""), labels)
        source = f"split:{target.split}"
        if target.split == cfg.train_split and len(taken):
            gone = np.isin(frame["id"].to_numpy(), taken)
            frame = frame[~gone].reset_index(drop=True)
            info["dropped_held_out"] = int(gone.sum())
            log.info("target.split: %s: %d rows the holdout rule took out of the pool (held-out eval / "
                     "validation sentences and their phrases) are not in the target", target.split,
                     int(gone.sum()))
            if frame.empty:
                raise DataError(f"target.split: {target.split!r} has no rows left once the held-out "
                                "sentences and their phrases are dropped")
    else:
        frame = read_target_path(target, target.text_column or cfg.text_column, to_int)
        source = f"path:{target.path}"
    match = cfg.holdout_match
    in_eval = in_texts(frame, evalf, match)
    granted = granted_labels(frame, target.labelled)
    n_eval_labels = int((granted & in_eval).sum())
    if in_eval.any():
        log.warning("target: %d of %d target texts are eval texts: selections that read the target are "
                    "transductive%s", int(in_eval.sum()), len(frame),
                    f", and {n_eval_labels} eval labels are handed to them (target.labelled)"
                    if n_eval_labels else "")
    return TargetSet(frame, source, bool(in_eval.any()), count_in_pool(frame, pool, match), info,
                     n_in_eval=int(in_eval.sum()), eval_labels=n_eval_labels)


_NOISE_STREAM = 0x6E6F697365  # "noise": a stream of its own, apart from the selectors' seeds


def add_label_noise(train: pd.DataFrame, cfg: LabelNoiseConfig, num_labels: int
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Flip ``round(cfg.rate * n)`` seeded pool labels; returns the noisy pool and the flips.

    The same (pool, rate, seed, kind) always flips the same rows to the same
    labels, so a noisy study is as reproducible as a clean one. The generator
    is keyed by ``(seed, _NOISE_STREAM)``, never by ``seed`` alone: selectors
    draw from ``default_rng(seed)``, and ``random`` at seed 0 once picked
    exactly the rows that noise seed 0 had flipped (``choice`` without
    replacement is prefix-consistent), a subset with 100 % wrong labels.
    """
    rng = np.random.default_rng([cfg.seed, _NOISE_STREAM])
    n = len(train)
    rows = np.sort(rng.choice(n, size=int(round(cfg.rate * n)), replace=False))
    original = train["label"].to_numpy(np.int64)
    noisy = original.copy()
    if cfg.kind == "uniform":
        # An offset in 1..K-1 lands uniformly on one of the other K-1 classes.
        noisy[rows] = (original[rows] + rng.integers(1, num_labels, size=len(rows))) % num_labels
    else:
        noisy[rows] = (original[rows] + 1) % num_labels
    out = train.copy()
    out["label"] = noisy
    flips = pd.DataFrame({"id": train["id"].to_numpy(np.int64)[rows], "original_label": original[rows],
                          "noisy_label": noisy[rows]})
    log.info("dataset.label_noise: flipped %d of %d pool labels (%s, rate %g, seed %d)",
             len(rows), n, cfg.kind, cfg.rate, cfg.seed)
    return out, flips


def _sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    # Sorted positions keep the source order: subsampling never shuffles ids.
    pos = np.sort(np.random.default_rng(seed).choice(len(df), size=n, replace=False))
    return df.iloc[pos].reset_index(drop=True)


MAX_TEXT_CHARS = 100_000
"""Texts are cut to this many characters at load, with a warning. Every model reads at
most ``max_length`` (<= 8192) tokens, but tokenizers first split the whole text: one
10 MB row costs a fast tokenizer ~2 GB and ~20 s before truncation."""


def _clip_long_texts(text: pd.Series, raw: pd.DataFrame, split: str) -> pd.Series:
    lengths = text.str.len().to_numpy()
    long = np.flatnonzero(lengths > MAX_TEXT_CHARS)
    if not len(long):
        return text
    i = int(long[0])
    log.warning("dataset.%s: %d texts longer than %d characters (first: %s, %d characters) cut to "
                "their first %d; models read only their first max_length tokens", split, len(long),
                MAX_TEXT_CHARS, at(raw, i), int(lengths[i]), MAX_TEXT_CHARS)
    return text.str.slice(0, MAX_TEXT_CHARS)


_INT_LABEL = re.compile(r"-?[0-9]+")


def _label_mapping(cfg: DatasetConfig, labels: pd.Series) -> tuple[list[str], dict[str, int]]:
    """Labels as ints ``0..K-1`` and their names.

    Integer labels are kept as they are (names from ``label_names`` or the
    digits); string labels map to their sorted order unless ``label_names``
    fixes the order.
    """
    vals = labels.dropna().astype(str).str.strip()
    uniq = sorted(set(vals))
    # ASCII digits only: str.isdigit() is also true of '²' or '٣', which int() refuses or reads as 3.
    integral = bool(uniq) and all(_INT_LABEL.fullmatch(u) for u in uniq)
    if cfg.label_names is not None:
        names = list(cfg.label_names)
        if len(set(names)) != len(names):
            raise DataError("dataset.label_names: names must be unique")
        if integral:
            return names, {str(i): i for i in range(len(names))} | {n: i for i, n in enumerate(names)}
        return names, {n: i for i, n in enumerate(names)}
    if integral:
        k = max(int(u) for u in uniq) + 1
        return [str(i) for i in range(k)], {str(i): i for i in range(k)}
    return uniq, {n: i for i, n in enumerate(uniq)}


def _to_table(raw: pd.DataFrame, cfg: DatasetConfig, to_int: dict[str, int], split: str) -> pd.DataFrame:
    text = raw[cfg.text_column]
    bad = text.isna() | (text.astype(str).str.strip() == "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"dataset.{split}: empty text in column {cfg.text_column!r} at row {i} "
            f"({at(raw, i, row=False)}; {int(bad.sum())} empty rows)"
        )
    lab = raw[cfg.label_column]
    if lab.isna().any():
        i = int(np.flatnonzero(lab.isna().to_numpy())[0])
        raise DataError(
            f"dataset.{split}: missing label in column {cfg.label_column!r} at row {i} "
            f"({at(raw, i, row=False)}; {int(lab.isna().sum())} rows)"
        )
    keys = lab.astype(str).str.strip()
    if keys.str.fullmatch(r"-?[0-9]+\.0").all():  # parquet/jsonl floats like 1.0
        keys = keys.str.replace(r"\.0$", "", regex=True)
    unknown = ~keys.isin(list(to_int))
    if unknown.any():
        i = int(np.flatnonzero(unknown.to_numpy())[0])
        why = ("is not in dataset.label_names" if cfg.label_names is not None
               else "does not occur in the train split" if split == "eval" else "is not a known class")
        raise DataError(
            f"dataset.{split}: label {keys.iloc[i]!r} in column {cfg.label_column!r} is not a known class: "
            f"it {why} ({at(raw, i)}; known: {sorted(to_int)[:10]})"
        )
    text = _clip_long_texts(text.astype(str), raw, split)
    return pd.DataFrame({
        "id": raw["_id"].to_numpy(np.int64),
        "text": text.to_numpy(),
        "label": keys.map(to_int).to_numpy(np.int64),
    })


def _check_classes(df: pd.DataFrame, names: list[str], split: str, origin: dict | None = None) -> None:
    counts = np.bincount(df["label"].to_numpy(), minlength=len(names))
    where = f" in {origin['file']}" if origin else ""
    if len(counts) > len(names):
        raise DataError(f"dataset.label_names: {len(names)} names but labels go up to {len(counts) - 1}")
    if len(names) < 2 or (counts > 0).sum() < 2:
        present = [names[i] for i in np.flatnonzero(counts)]
        raise DataError(f"dataset.{split}: need at least 2 classes; got {present}{where}")
    empty = [names[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise DataError(f"dataset.{split}: class {empty[0]!r} has no rows{where} (classes: {names})")
