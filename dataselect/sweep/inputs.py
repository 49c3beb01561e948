"""What the trials and the report read: the study's ``inputs/`` and ``study.json``.

Written by the driver once the features are computed: pool and eval rows
(``pool.parquet`` also carries what subsets are described by), embeddings
for probe trials, the target's measures (``inputs/target/``), the label
flips of a noisy pool, and ``study.json`` (resolved config, models, pool,
holdout and target), each rewritten only when its key changes.

Every file is written atomically (temp file + rename), and a rewrite of
``inputs/`` first removes its stamp (``inputs.json``) and writes the new one
last: a crash half-way leaves no stamp, so no old stamp vouches for a mix of
old and new files and the next run writes them all again.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dataselect.core.atomic import atomic_write
from dataselect.core.config import StudyConfig
from dataselect.sweep.select_stage import CellKey, SelectionResult
from dataselect.sweep.stages import probe_column, target_features
from dataselect.sweep.trial import atomic_write_text, config_hash

log = logging.getLogger(__name__)

_INPUTS_VERSION = 1


# --------------------------------------------------------------------------- stages
def stage_features(cfg: StudyConfig, ds: Any) -> tuple[dict[str, np.ndarray], str, np.ndarray | None]:
    """Pool feature table (+ its fingerprint) and eval embeddings when the trainer probes.

    A fine-tune sweep whose selectors read no features (``random``, ``full``)
    skips the feature stage: an encoder pass over the pool would buy nothing.
    """
    from dataselect.selectors import get_selector

    needs = {c for s in cfg.selectors for c in get_selector(s.name, **dict(s.params)).required()}
    if cfg.trainer.mode == "finetune" and not needs - {"id", "label"} and cfg.target is None:
        log.info("no selector reads features: skipping the feature stage")
        table = {"id": ds.train["id"].to_numpy(np.int64), "label": ds.train["label"].to_numpy(np.int64)}
        return table, config_hash({"rows": ds.fingerprint, "columns": ["id", "label"]}), None

    from dataselect.features import compute_features

    store = cfg.cache_root / "features"
    # The driver holds what it writes next to the rows (and a probe's inputs);
    # select tasks read every other column from the store's shards themselves.
    # (and, with a target, the embeddings the report measures the distance to it by).
    keep = [*_KEPT_FEATURES, *(("embedding", "embedding_norm")
                               if cfg.trainer.mode == "probe" or cfg.target is not None else ())]
    pool = compute_features(ds.train, cfg.features, store, columns=keep)
    table = {k: np.asarray(pool[k]) for k in pool}
    eval_emb = None
    if cfg.trainer.mode == "probe":
        ev = compute_features(ds.eval, cfg.features, store, which={"embedding"})
        eval_emb = np.asarray(ev[probe_column(cfg, ev)], dtype=np.float32)
    return table, str(pool.fingerprint), eval_emb


_KEPT_FEATURES = ("perplexity", "pseudo_perplexity")
"""Pool feature columns copied next to the rows, so each trial's ``kept.parquet`` holds them."""

TARGET_INPUTS = "target"
"""``inputs/target/``: what the report measures a subset's distance to the target by:
``target.parquet`` (``id``, ``n_words``), ``target_embedding.npy``, ``eval_embedding.npy``
and ``pool_embedding.npy`` (one embedding column; pool rows in ``pool.parquet`` order)."""


def target_table(cfg: StudyConfig, ds: Any) -> Any:
    """The target's feature table (cached like the pool's), or None."""
    return target_features(cfg, ds, columns=("embedding", "embedding_norm"))


def write_target_inputs(study: Path, cfg: StudyConfig, ds: Any, pool: dict[str, np.ndarray],
                         target: Any) -> None:
    """``inputs/target/``: target rows' lengths and embeddings beside the pool's and the eval set's."""
    from dataselect.features import compute_features

    out = study / "inputs" / TARGET_INPUTS
    out.mkdir(parents=True, exist_ok=True)
    col = "embedding_norm" if "embedding_norm" in target and "embedding_norm" in pool else "embedding"
    ev = compute_features(ds.eval, cfg.features, cfg.cache_root / "features", which={"embedding"})
    save_npy(out / "eval_embedding.npy", np.asarray(ev[col], np.float32))
    frame = ds.target.frame
    rows = pd.DataFrame({"id": frame["id"].to_numpy(np.int64),
                         "n_words": frame["text"].str.split().str.len().astype(np.int32)})
    save_parquet(out / "target.parquet", rows)
    pos = pd.Index(np.asarray(target["id"])).get_indexer(frame["id"])
    save_npy(out / "target_embedding.npy", np.asarray(target[col], np.float32)[pos])
    save_npy(out / "pool_embedding.npy", np.asarray(pool[col], np.float32))


def save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` atomically (through a handle: ``np.save`` would append ``.npy`` to a temp name)."""
    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.save(fh, array)

    atomic_write(path, write)


def save_parquet(path: Path, frame: pd.DataFrame) -> None:
    """``frame`` to parquet atomically, without its index."""
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def inputs_key(ds: Any, features_fp: str, eval_emb: np.ndarray | None, probe_col: str | None = None) -> str:
    """Key of the rows and embeddings :func:`write_inputs` writes (data, features, probe input)."""
    return config_hash({"v": _INPUTS_VERSION, "data": ds.fingerprint, "features": features_fp,
                        "probe": eval_emb is not None, "probe_col": probe_col})


def stored_inputs_key(study: Path) -> str | None:
    """The key ``inputs/inputs.json`` vouches for, or None (no stamp, or an unreadable one)."""
    try:
        key = json.loads((study / "inputs" / "inputs.json").read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        return None
    return key if isinstance(key, str) else None


def validation_embedding(cfg: StudyConfig, ds: Any, probe_col: str | None) -> np.ndarray | None:
    """Embeddings of the validation holdout a probe trial scores (None: no holdout, or a fine-tune)."""
    if ds.validation is None or cfg.trainer.mode != "probe":
        return None
    from dataselect.features import compute_features

    feats = compute_features(ds.validation, cfg.features, cfg.cache_root / "features", which={"embedding"})
    return np.asarray(feats[probe_col or "embedding"], dtype=np.float32)


def write_inputs(study: Path, ds: Any, table: dict[str, np.ndarray], eval_emb: np.ndarray | None,
                  features_fp: str, probe_col: str | None = None,
                  validation_emb: np.ndarray | None = None) -> str:
    """Rows and embeddings the trials read; rewritten only when their key changes.

    ``pool.parquet`` also carries what the report describes subsets by:
    ``n_words`` (whitespace tokens), ``original_label`` under label noise,
    and perplexity columns when computed. A study with a validation holdout also
    gets ``validation.parquet`` (its rows) and, for probes, ``validation_embedding.npy``
    (``validation_emb``); its rows are in the data's fingerprint, so in the key.
    """
    from dataselect.sweep.trial import VALIDATION_EMBEDDING, VALIDATION_INPUT

    key = inputs_key(ds, features_fp, eval_emb, probe_col)
    inputs = study / "inputs"
    stamp = inputs / "inputs.json"
    if stored_inputs_key(study) == key:
        return key
    inputs.mkdir(parents=True, exist_ok=True)
    if not np.array_equal(np.asarray(table["id"]), ds.train["id"].to_numpy()):
        raise RuntimeError("feature table rows are not aligned with the dataset's train pool")
    # The old stamp goes first: from here until the new one is written, no stamp
    # vouches for files that may be half old, half new.
    stamp.unlink(missing_ok=True)
    pool = ds.train[["id", "text", "label"]].copy()
    if ds.noise is not None:
        orig = pool["label"].to_numpy().copy()
        at = pd.Index(pool["id"]).get_indexer(ds.noise["id"])
        orig[at] = ds.noise["original_label"].to_numpy()
        pool["original_label"] = orig
    pool["n_words"] = pool["text"].str.split().str.len().astype(np.int32)
    for col in _KEPT_FEATURES:
        if col in table:
            pool[col] = np.asarray(table[col], dtype=np.float32)
    save_parquet(inputs / "pool.parquet", pool)
    save_parquet(inputs / "eval.parquet", ds.eval[["id", "text", "label"]])
    if eval_emb is not None:
        save_npy(inputs / "pool_embedding.npy", np.asarray(table[probe_col or "embedding"], dtype=np.float32))
        save_npy(inputs / "eval_embedding.npy", eval_emb)
    for name in (VALIDATION_INPUT, VALIDATION_EMBEDDING):  # a study that dropped its holdout
        (inputs / name).unlink(missing_ok=True)
    if ds.validation is not None:
        save_parquet(inputs / VALIDATION_INPUT, ds.validation[["id", "text", "label"]])
        if validation_emb is not None:
            save_npy(inputs / VALIDATION_EMBEDDING, validation_emb)
    atomic_write_text(stamp, json.dumps({"key": key}))
    return key


def write_label_noise(study: Path, ds: Any) -> None:
    """``label_noise.parquet`` (``id``, ``original_label``, ``noisy_label``) when the pool is noisy."""
    path = study / "label_noise.parquet"
    if ds.noise is None:
        path.unlink(missing_ok=True)  # a clean re-run of a once-noisy study
        return
    save_parquet(path, ds.noise)


def write_study_meta(cfg: StudyConfig, ds: Any, study: Path, n_trials: int,
                      selections: dict[CellKey, SelectionResult], probe_col: str | None = None,
                      feature_costs: dict[str, dict[str, dict[str, Any]]] | None = None) -> None:
    """What the report must state honestly: models, stand-ins, pool size, seeds; and what
    each feature family of the pool and target cost to compute (``feature_costs``:
    table -> family -> columns and seconds)."""
    from dataselect.core.config import DEFAULT_CAUSAL_LM, DEFAULT_ENCODER

    def describe(ref: str | None, default: str | None) -> dict[str, Any] | None:
        if ref is None:
            return None
        info: dict[str, Any] = {"ref": ref, "default": default}
        try:
            from dataselect.core.models import OFFLINE_MODELS, describe_model

            info.update(describe_model(ref))
            info["offline_short_name"] = ref in OFFLINE_MODELS
        except Exception as err:  # noqa: BLE001 - description only, never fatal
            info["describe_error"] = str(err)
        info["is_default"] = ref == default
        return info

    meta = {
        "name": cfg.name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.model_dump(mode="json"),
        "dataset": {"source": ds.source, "n_pool": len(ds.train), "n_eval": len(ds.eval),
                    "label_names": list(ds.label_names), "fingerprint": ds.fingerprint,
                    "eval_label_counts": np.bincount(ds.eval["label"].to_numpy(),
                                                     minlength=ds.num_labels).tolist()},
        "models": {
            "trainer": describe(cfg.trainer.model, DEFAULT_ENCODER) if cfg.trainer.mode == "finetune" else None,
            "encoder": describe(cfg.features.encoder, DEFAULT_ENCODER),
            "perplexity": describe(cfg.features.perplexity_model, DEFAULT_CAUSAL_LM),
            "pseudo-perplexity": describe(cfg.features.mlm_model, DEFAULT_ENCODER),
            "LM judge": describe(cfg.features.judge_model or cfg.features.perplexity_model,
                                 DEFAULT_CAUSAL_LM) if cfg.features.llm_judge else None,
        },
        "probe_features": probe_col,
        "label_noise": None if ds.noise is None else {
            **cfg.dataset.label_noise.model_dump(mode="json"), "n_flipped": len(ds.noise)},
        "holdout": ds.holdout,
        "target": None if ds.target is None else ds.target.describe(),
        "n_trials": n_trials,
        "feature_costs": feature_costs or {},
        "selections": [r.to_dict() for r in selections.values()],
    }
    if (prereg := study / "preregistration.json").is_file():  # a confirmatory study's (sweep.confirm)
        meta["preregistration"] = json.loads(prereg.read_text())
    atomic_write_text(study / "study.json", json.dumps(meta, indent=2, default=str))
