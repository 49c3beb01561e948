"""One Tune trial: train on one selection, score it, keep the per-row evidence.

The trainable (:func:`run_trial_reported`) reads rows, embeddings and its
manifest from the study folder (storage every node sees), trains with
:mod:`dataselect.train`, writes ``trials/<trial>/`` (result cache keyed by
a hash of the trial's config, predictions, kept rows, attempts log, the
error of a failed trial) and reports its metrics. A relaunched trial whose
result is cached reports it without training again (see :mod:`dataselect.sweep.run`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dataselect.core.config import TrainerConfig, file_slug
from dataselect.train import PREDICTIONS_KEY, EvalPredictions

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- naming
def trial_name_for(selector: str, fraction: float, seed: int) -> str:
    """Readable, unique trial name: ``<selector>_f<fraction>_s<seed>`` (labels that
    slug alike are refused by the config)."""
    return f"{file_slug(selector)}_f{fraction:g}_s{seed}"


def tune_trial_name(trial: Any) -> str:
    c = trial.config.get("run", trial.config)
    return trial_name_for(c["cell"]["selector"], c["cell"]["fraction"], c["seed"])


def cell_id(selector: str, fraction: float, seed: int) -> str:
    return f"{selector}|{fraction!r}|{seed}"


def config_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- trial
def run_trial(
    config: dict[str, Any],
    *,
    study_dir: str,
    trainer: dict[str, Any],
    num_labels: int,
    selections: dict[str, dict[str, Any]],
    inputs_key: str,
    label_names: list[str] | None = None,
    reuse_from: list[str] | None = None,
) -> None:
    """Tune trainable: train on one selection and ``tune.report`` its metrics.

    ``config`` is ``{"cell": {selector, name, params, fraction}, "seed": int}``.
    A failed selection raises, so Tune marks the trial ERROR and moves on.
    ``reuse_from``: other study folders (the config's ``cache_dir``) whose
    trial of the same name trained on the same rows is adopted instead of
    training again (:func:`reused_training`).
    """
    from ray import tune

    from dataselect.core.manifest import read_manifest
    from dataselect.train import finetune, probe

    config = config.get("run", config)  # a grid with a seed-limited whole-pool reference nests it
    cell, seed = config["cell"], int(config["seed"])
    name = trial_name_for(cell["selector"], cell["fraction"], seed)
    sel = selections[cell_id(cell["selector"], cell["fraction"], seed)]
    study = Path(study_dir)
    tcfg = TrainerConfig(**trainer)
    precision = trial_precision(tcfg)
    tcfg = tcfg.model_copy(update={"precision": precision or tcfg.precision})
    keyed = trainer_key(trainer, precision)
    chash = config_hash({"cell": cell, "seed": seed, "trainer": keyed, "inputs": inputs_key,
                          "manifest": sel["path"], "num_labels": num_labels})
    trial_dir = study / "trials" / name
    trial_dir.mkdir(parents=True, exist_ok=True)
    cached = trial_dir / "result.json"
    if cached.is_file():
        prev = json.loads(cached.read_text())
        if prev.get("config_hash") == chash and trial_files_current(trial_dir, chash):
            log.info("trial %s: reusing finished result (%s)", name, cached)
            tune.report({**prev["result"], "reused": True})
            return
    with (trial_dir / "attempts.jsonl").open("a") as fh:
        fh.write(json.dumps({"time": time.time(), "pid": os.getpid(), "config_hash": chash}) + "\n")
    if sel["error"]:
        where = f"\n\nThe selection's own traceback:\n{sel['traceback']}" if sel.get("traceback") else ""
        raise RuntimeError(f"selection failed for {cell['selector']} at fraction {cell['fraction']} "
                           f"seed {seed}: {sel['error']}{where}")

    inputs = study / "inputs"
    pool = pd.read_parquet(inputs / "pool.parquet")
    manifest = read_manifest(Path(sel["path"]))
    picked = manifest.ids
    pos = pd.Index(pool["id"]).get_indexer(picked)
    if (pos < 0).any():
        raise RuntimeError(f"manifest {sel['path']} names ids that are not in the pool")
    logdir = study / "tensorboard" / name
    hp = {"selector": cell["selector"], "fraction": cell["fraction"]}
    evalf = pd.read_parquet(inputs / "eval.parquet")
    adopted = None
    if reuse_from and tcfg.mode != "probe":
        key = training_key(keyed, seed, num_labels, pool.iloc[pos], evalf)
        adopted = next((r for o in reuse_from if (r := reused_training(Path(o), name, key, seed, num_labels))),
                       None)
    if adopted is not None:
        res, preds_frame, source = adopted
        log.info("trial %s: trained rows identical to %s; its result is reused", name, source)
        write_trial_files(trial_dir, chash, evalf, preds_frame, pool.iloc[pos])
        res = {**res, "reused_from": str(source)}
    elif tcfg.mode == "probe":
        shutil.rmtree(logdir, ignore_errors=True)  # a relaunched trial starts a clean run
        emb = np.load(inputs / "pool_embedding.npy", mmap_mode="r")
        eval_emb = np.load(inputs / "eval_embedding.npy")
        res = probe(np.asarray(emb[np.sort(pos)]), pool["label"].to_numpy()[np.sort(pos)], eval_emb,
                    evalf["label"].to_numpy(), tcfg, seed=seed, num_labels=num_labels, logdir=logdir,
                    hparams=hp, label_names=label_names)
    else:
        shutil.rmtree(logdir, ignore_errors=True)
        res = finetune(pool.iloc[pos].reset_index(drop=True), evalf, tcfg, num_labels=num_labels,
                       seed=seed, logdir=logdir, progress=False, hparams=hp, label_names=label_names)
    if adopted is None:
        write_trial_files(trial_dir, chash, evalf, res.pop(PREDICTIONS_KEY), pool.iloc[pos])
    import ray

    out = {"selector": cell["selector"], "selector_name": cell["name"],
           "params": json.dumps(cell["params"], sort_keys=True), "fraction": cell["fraction"],
           "budget": sel["budget"], "selection_seconds": sel["seconds"],
           # What the selection said about itself (warm-up cost, target labels...), and
           # whether it read the target (its features key joins the target's).
           "selection_info": json.dumps(manifest.meta.get("info") or {}, sort_keys=True),
           "reads_target": "+target:" in str(manifest.meta.get("features", "")),
           # Node ids, not IPs: nodes may share an IP (containers, one-host clusters).
           "node_id": ray.get_runtime_context().get_node_id(), **res}
    atomic_write_text(cached, json.dumps({"config_hash": chash, "result": out}, default=float))
    tune.report({**out, "reused": True} if adopted is not None else out)


def trial_precision(tcfg: TrainerConfig) -> str | None:
    """The precision a fine-tune trial runs in on this node (``fp32`` / ``bf16``); None for a probe."""
    if tcfg.mode == "probe":
        return None
    from dataselect.core.models import pick_device
    from dataselect.train.precision import resolve_precision

    return resolve_precision(tcfg.precision, pick_device(tcfg.device))


def trainer_key(trainer: dict[str, Any], precision: str | None) -> dict[str, Any]:
    """The trainer settings a result depends on: the config with ``precision`` resolved.

    ``precision`` enters only when it is not fp32, so an fp32 trial keeps the key it
    had before the setting existed (every earlier result was fp32) and studies that
    ran then are still resumed and adopted; ``auto`` never enters, only what it
    resolved to on the node that trained.
    """
    out = {k: v for k, v in trainer.items() if k != "precision"}
    if precision not in (None, "fp32"):
        out["precision"] = precision
    return out


SELECTION_KEYS = ("selector", "selector_name", "params", "fraction", "budget", "selection_seconds",
                  "selection_info", "reads_target", "node_id", "reused_from")
"""Result fields that describe the selection and the run, not the training: a
result adopted from another study takes these from this one."""


def training_key(trainer: dict[str, Any], seed: int, num_labels: int, train: pd.DataFrame,
                 evalf: pd.DataFrame) -> str:
    """What a fine-tuned result depends on, by content: trainer settings, seed, classes,
    and the train rows (in pick order) and eval rows themselves (ids, labels, texts).

    Two studies whose selectors picked the same rows of the same texts (random,
    k-means, a target-aware selector in a study that adds more selectors) train
    the same model; the manifest's path or the study's other features do not
    enter. Probe trials read embeddings and are not keyed this way.
    """
    h = hashlib.sha256(json.dumps({"trainer": trainer, "seed": int(seed), "num_labels": int(num_labels)},
                                  sort_keys=True, default=str).encode())
    for df in (train, evalf):
        h.update(np.ascontiguousarray(df["id"].to_numpy(np.int64)).tobytes())
        h.update(np.ascontiguousarray(df["label"].to_numpy(np.int64)).tobytes())
        h.update("\x00".join(df["text"].astype(str)).encode())
    return h.hexdigest()[:16]


def reused_training(other: Path, name: str, key: str, seed: int, num_labels: int
                    ) -> tuple[dict[str, Any], pd.DataFrame, Path] | None:
    """The finished trial ``name`` of study folder ``other`` if it trained what ``key`` names.

    The key is recomputed from that study's own files (its trainer config,
    ``inputs/``, the trial's ``kept.parquet`` ids in pick order), never taken
    on trust; a trial older than that study's inputs, one that failed, or one
    whose per-row files do not match its result is not reused. Returns its
    training metrics (the :data:`SELECTION_KEYS` dropped), its predictions and
    the trial folder.
    """
    tdir = other / "trials" / name
    try:
        cached = json.loads((tdir / "result.json").read_text())
        prev, prev_hash = cached["result"], cached["config_hash"]
        trainer = trainer_key(json.loads((other / "study.json").read_text())["config"]["trainer"],
                              prev.get("compute_dtype", "fp32"))
        if (tdir / "result.json").stat().st_mtime < (other / "inputs" / "inputs.json").stat().st_mtime:
            return None
        if prev.get("trial_error") or not trial_files_current(tdir, prev_hash):
            return None
        pool = pd.read_parquet(other / "inputs" / "pool.parquet", columns=["id", "text", "label"])
        evalf = pd.read_parquet(other / "inputs" / "eval.parquet", columns=["id", "text", "label"])
        kept = pd.read_parquet(tdir / KEPT_FILE, columns=["id"])["id"].to_numpy(np.int64)
        preds = pd.read_parquet(tdir / PREDICTIONS_FILE)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    pos = pd.Index(pool["id"]).get_indexer(kept)
    if (pos < 0).any() or training_key(trainer, seed, num_labels, pool.iloc[pos], evalf) != key:
        return None
    return {k: v for k, v in prev.items() if k not in SELECTION_KEYS}, preds, tdir


class TrialError(RuntimeError):
    """A trial failed by its own error (reported, then raised; not retried)."""


def run_trial_reported(config: dict[str, Any], **kwargs: Any) -> None:
    """The Tune trainable: :func:`run_trial`, its own errors reported, then raised.

    Tune's ``FailureConfig`` retries every raised error, but only a lost worker
    or node is worth retrying: a failed selection or a bad manifest fails the
    same way every time. Such errors are caught here, written to
    ``trials/<trial>/error.txt``, reported as ``{"trial_error": ...}`` (on which
    :class:`~dataselect.sweep.callbacks.NoRetryOnOwnError` turns the trial's
    retries off) and raised as :class:`TrialError`: the trial ends ERROR after
    one attempt, and ``--resume`` runs it again like any errored trial. A dead
    process raises nothing here, so Tune sees a lost actor and restarts the trial.
    """
    import traceback

    from ray import tune

    from dataselect.core.errors import first_line

    try:
        run_trial(config, **kwargs)
        return
    except Exception as err:  # noqa: BLE001 - every in-trial error is the trial's own
        run = config.get("run", config)
        cell, seed = run["cell"], int(run["seed"])
        name = trial_name_for(cell["selector"], cell["fraction"], seed)
        msg = first_line(err)
        trial_dir = Path(kwargs["study_dir"]) / "trials" / name
        trial_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(trial_dir / "error.txt", traceback.format_exc())
        log.error("trial %s failed (not retried): %s", name, msg)
    tune.report({"trial_error": msg[:500], "selector": cell["selector"], "fraction": cell["fraction"]})
    raise TrialError(f"trial {name}: {msg}")


PREDICTIONS_FILE = "predictions.parquet"
KEPT_FILE = "kept.parquet"


def write_trial_files(trial_dir: Path, chash: str, evalf: pd.DataFrame,
                      preds: EvalPredictions | pd.DataFrame, kept: pd.DataFrame) -> None:
    """Per-row evidence of one trial, each file atomic and stamped with the trial's config hash.

    ``predictions.parquet``: ``id``, ``label``, ``pred``, ``prob_<k>`` per eval
    row (the report's paired comparison reads these). ``kept.parquet``: the
    subset in pick order with the pool columns the sweep stored (``label``,
    ``original_label`` under label noise, ``n_words``, ``perplexity``...).
    ``preds`` may be another trial's ``predictions.parquet`` (a reused result).
    """
    if isinstance(preds, pd.DataFrame):
        frame = preds
    else:
        table = {"id": evalf["id"].to_numpy(np.int64), "label": evalf["label"].to_numpy(np.int64),
                 "pred": np.asarray(preds.pred, np.int64)}
        if preds.proba is not None and preds.proba.size:
            for k in range(preds.proba.shape[1]):
                table[f"prob_{k}"] = np.asarray(preds.proba[:, k], np.float32)
        frame = pd.DataFrame(table)
    _write_stamped(trial_dir / PREDICTIONS_FILE, frame, chash)
    cols = [c for c in kept.columns if c != "text"]
    _write_stamped(trial_dir / KEPT_FILE, kept[cols].reset_index(drop=True), chash)


def _write_stamped(path: Path, df: pd.DataFrame, chash: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tbl = pa.Table.from_pandas(df, preserve_index=False)
    tbl = tbl.replace_schema_metadata({**(tbl.schema.metadata or {}), b"dataselect_config_hash": chash.encode()})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(tbl, tmp)
    os.replace(tmp, path)


def trial_files_current(trial_dir: Path, chash: str) -> bool:
    """Both per-row files exist and carry ``chash`` (else the trial runs again)."""
    import pyarrow.parquet as pq

    for name in (PREDICTIONS_FILE, KEPT_FILE):
        try:
            meta = pq.read_schema(trial_dir / name).metadata or {}
        except (OSError, ValueError):
            return False
        if meta.get(b"dataselect_config_hash", b"").decode() != chash:
            return False
    return True


# --------------------------------------------------------------------------- stages
