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

from dataselect.core.atomic import atomic_write
from dataselect.core.atomic import atomic_write_text as _atomic_write_text
from dataselect.core.config import TrainerConfig, file_slug, fraction_slug
from dataselect.train import PREDICTIONS_KEY, VALIDATION_KEY, EvalPredictions

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- naming
def trial_name_for(selector: str, fraction: float, seed: int) -> str:
    """Readable, unique trial name: ``<selector>_f<fraction>_s<seed>`` (labels that
    slug alike are refused by the config)."""
    return f"{file_slug(selector)}_f{fraction_slug(fraction)}_s{seed}"


def tune_trial_name(trial: Any) -> str:
    c = trial.config.get("run", trial.config)
    return trial_name_for(c["cell"]["selector"], c["cell"]["fraction"], c["seed"])


def cell_id(selector: str, fraction: float, seed: int) -> str:
    return f"{selector}|{fraction!r}|{seed}"


def config_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def atomic_write_text(path: Path, text: str) -> None:
    """``text`` to ``path`` by temp file + rename, the temp file removed if the write fails."""
    _atomic_write_text(path, text)


def read_cached_result(path: Path) -> dict[str, Any] | None:
    """A trial's ``result.json``, or None when there is none or it is damaged.

    A damaged file (truncated, not JSON, not ``{config_hash, result}``) is a cache
    miss, not a trial error: it is moved aside to ``result.json.damaged-<time>``
    for inspection, one warning says so, and the trial trains again (once: the
    new result replaces it). A file that cannot be read at all (permissions,
    I/O) raises, since training again would not make it readable.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        cached = json.loads(data.decode("utf-8"))
        if not (isinstance(cached, dict) and isinstance(cached.get("config_hash"), str)
                and isinstance(cached.get("result"), dict)):
            raise ValueError("not a {config_hash, result} object")
        return cached
    except ValueError as err:
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        os.replace(path, aside)
        log.warning("trial %s: its cached result %s is damaged (%s); kept as %s and trained again",
                    path.parent.name, path, str(err).splitlines()[0][:120], aside.name)
        return None


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
    ``reuse_from``: other study folders (the config's ``cache_dir``) or study
    archives (its ``archive``) whose trial of the same name trained on the same
    rows is adopted instead of training again (:func:`reused_training`,
    :func:`reused_archived`), the first that has it.
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
    inputs = study / "inputs"
    validation = (pd.read_parquet(inputs / VALIDATION_INPUT) if (inputs / VALIDATION_INPUT).is_file()
                  else None)
    prev = read_cached_result(cached)
    if (prev is not None and prev["config_hash"] == chash and trial_files_current(trial_dir, chash)
            and (validation is None or is_stamped(trial_dir / VALIDATION_FILE, chash))):
        log.info("trial %s: reusing finished result (%s)", name, cached)
        tune.report({**prev["result"], "reused": True})
        return
    with (trial_dir / "attempts.jsonl").open("a") as fh:
        fh.write(json.dumps({"time": time.time(), "pid": os.getpid(), "config_hash": chash}) + "\n")
    if sel["error"]:
        where = f"\n\nThe selection's own traceback:\n{sel['traceback']}" if sel.get("traceback") else ""
        raise RuntimeError(f"selection failed for {cell['selector']} at fraction {cell['fraction']} "
                           f"seed {seed}: {sel['error']}{where}")

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
    # A lender's trial holds no predictions on this study's validation holdout: none is adopted then.
    if reuse_from and tcfg.mode != "probe" and validation is None:
        key = training_key(keyed, seed, num_labels, pool.iloc[pos], evalf)
        adopted = next((r for o in reuse_from if (r := _adopt(Path(o), name, key, seed, num_labels, pool, evalf))),
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
        held = None if validation is None else (np.load(inputs / VALIDATION_EMBEDDING),
                                                validation["label"].to_numpy())
        res = probe(np.asarray(emb[np.sort(pos)]), pool["label"].to_numpy()[np.sort(pos)], eval_emb,
                    evalf["label"].to_numpy(), tcfg, seed=seed, num_labels=num_labels, logdir=logdir,
                    hparams=hp, label_names=label_names, validation=held)
    else:
        shutil.rmtree(logdir, ignore_errors=True)
        res = finetune(pool.iloc[pos].reset_index(drop=True), evalf, tcfg, num_labels=num_labels,
                       seed=seed, logdir=logdir, progress=False, hparams=hp, label_names=label_names,
                       validation_df=validation)
    if adopted is None:
        if validation is not None:
            _write_stamped(trial_dir / VALIDATION_FILE, predictions_frame(validation, res.pop(VALIDATION_KEY)),
                           chash)
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
           "node_id": ray.get_runtime_context().get_node_id(),
           # Which trainer code trained it, so a study adopting it checks the same version.
           "trainer_code_version": trainer_code_version(tcfg.mode), **res}
    atomic_write_text(cached, json.dumps({"config_hash": chash, "result": out}, default=float))
    tune.report({**out, "reused": True} if adopted is not None else out)


def trial_precision(tcfg: TrainerConfig) -> str | None:
    """The precision a fine-tune trial runs in on this node (``fp32`` / ``bf16``); None for a probe."""
    if tcfg.mode == "probe":
        return None
    from dataselect.core.models import pick_device
    from dataselect.train.precision import resolve_precision

    return resolve_precision(tcfg.precision, pick_device(tcfg.device))


def trainer_code_version(mode: str | None) -> int:
    """``CODE_VERSION`` of the module that trains in ``mode`` (:mod:`dataselect.train.probe`
    for ``probe``, else :mod:`dataselect.train.trainer`), read at call time."""
    import importlib

    name = "dataselect.train.probe" if mode == "probe" else "dataselect.train.trainer"
    return int(importlib.import_module(name).CODE_VERSION)


def trainer_key(trainer: dict[str, Any], precision: str | None,
                code_version: int | None = None) -> dict[str, Any]:
    """The trainer settings a result depends on: the config with ``precision`` resolved,
    and the version of the training code.

    ``precision`` enters only when it is not fp32, so an fp32 trial keeps the key it
    had before the setting existed (every earlier result was fp32) and studies that
    ran then are still resumed and adopted; ``auto`` never enters, only what it
    resolved to on the node that trained. ``code_version`` (default: this code's,
    :func:`trainer_code_version`) enters the same way, only when it is not 1: a
    trainer change that alters results bumps ``CODE_VERSION`` and every trial keyed
    by the old code trains again, while results from version 1 keep their keys.
    """
    # ``adamw: foreach`` is bit for bit the per-tensor AdamW every result before the
    # setting used, so it enters no key either.
    out = {k: v for k, v in trainer.items() if k != "precision" and not (k == "adamw" and v == "foreach")}
    if precision not in (None, "fp32"):
        out["precision"] = precision
    version = trainer_code_version(trainer.get("mode")) if code_version is None else int(code_version)
    if version != 1:
        out["code_version"] = version
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
        # The lender's own code version (absent: 1, from before versions were recorded).
        trainer = trainer_key(json.loads((other / "study.json").read_text())["config"]["trainer"],
                              prev.get("compute_dtype", "fp32"), int(prev.get("trainer_code_version", 1)))
        if (tdir / "result.json").stat().st_mtime < (other / "inputs" / "inputs.json").stat().st_mtime:
            return None
        if prev.get("trial_error") or not trial_files_current(tdir, prev_hash):
            return None
        pool = pd.read_parquet(other / "inputs" / "pool.parquet", columns=["id", "text", "label"])
        evalf = pd.read_parquet(other / "inputs" / "eval.parquet", columns=["id", "text", "label"])
        kept = pd.read_parquet(tdir / KEPT_FILE, columns=["id"])["id"].to_numpy(np.int64)
        preds = pd.read_parquet(tdir / PREDICTIONS_FILE)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    pos = pd.Index(pool["id"]).get_indexer(kept)
    if (pos < 0).any() or training_key(trainer, seed, num_labels, pool.iloc[pos], evalf) != key:
        return None
    return {k: v for k, v in prev.items() if k not in SELECTION_KEYS}, preds, tdir


def _adopt(source: Path, name: str, key: str, seed: int, num_labels: int, pool: pd.DataFrame,
           evalf: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame, Path | str] | None:
    from dataselect.report.archive import is_archive

    if is_archive(source):
        return reused_archived(source, name, key, seed, num_labels, pool, evalf)
    return reused_training(source, name, key, seed, num_labels)


def reused_archived(archive: Path, name: str, key: str, seed: int, num_labels: int, pool: pd.DataFrame,
                    evalf: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame, str] | None:
    """The archived trial ``name`` of study archive ``archive`` if it trained what ``key`` names.

    The archive holds no texts: the key is recomputed from its kept ids in
    pick order, its trainer (``study.json``, the precision and trainer code version the trial ran in),
    and this study's ``pool`` and ``evalf`` texts, and must equal both the key
    the archive stored (written only for trials that :func:`reused_training`
    accepted in their own study: finished, current per-row files) and ``key``;
    the archived predictions must be of this eval set's rows. A damaged archive
    adopts nothing. Returns as :func:`reused_training` does, the source named
    ``<archive>/trials.parquet#<trial>``.
    """
    from dataselect.core.errors import UserError
    from dataselect.report.archive import TRIALS_FILE, open_archive

    try:
        arch = open_archive(archive)
        got = arch.trial(name)
        trainer = arch.meta["config"]["trainer"]
    except (UserError, OSError, ValueError, KeyError, TypeError) as err:
        log.warning("trial %s: archive %s not read (%s); training instead", name, archive, err)
        return None
    if (got is None or got.result is None or got.result.get("trial_error") or not got.training_key
            or got.kept is None or got.predictions is None or got.seed != seed):
        return None
    preds = got.predictions
    if not (np.array_equal(preds["id"].to_numpy(), evalf["id"].to_numpy(np.int64))
            and np.array_equal(preds["label"].to_numpy(), evalf["label"].to_numpy(np.int64))):
        return None
    pos = pd.Index(pool["id"]).get_indexer(got.kept)
    if (pos < 0).any():
        return None
    again = training_key(trainer_key(trainer, got.result.get("compute_dtype", "fp32"),
                                     int(got.result.get("trainer_code_version", 1))), seed, num_labels,
                         pool.iloc[pos], evalf)
    if again != got.training_key or again != key:
        return None
    return ({k: v for k, v in got.result.items() if k not in SELECTION_KEYS}, preds,
            f"{archive / TRIALS_FILE}#{name}")


def adoption_keys(study: Path) -> dict[str, str]:
    """Trial -> training key of every trial of study folder ``study`` that :func:`reused_training`
    would adopt from it (finished, fine-tuned, per-row files current): what a study archive
    stores so that :func:`reused_archived` can check it without the texts."""
    import re

    meta = json.loads((study / "study.json").read_text())
    trainer, num_labels = meta["config"]["trainer"], len(meta["dataset"]["label_names"])
    if trainer.get("mode") == "probe" or not (study / "trials").is_dir():
        return {}
    pool = pd.read_parquet(study / "inputs" / "pool.parquet", columns=["id", "text", "label"])
    evalf = pd.read_parquet(study / "inputs" / "eval.parquet", columns=["id", "text", "label"])
    out = {}
    for tdir in sorted(p for p in (study / "trials").iterdir() if p.is_dir()):
        m = re.search(r"_s(-?\d+)$", tdir.name)  # trial_name_for
        try:
            res = json.loads((tdir / "result.json").read_text())["result"]
            kept = pd.read_parquet(tdir / KEPT_FILE, columns=["id"])["id"].to_numpy(np.int64)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        pos = pd.Index(pool["id"]).get_indexer(kept)
        if m is None or (pos < 0).any():
            continue
        seed = int(m.group(1))
        key = training_key(trainer_key(trainer, res.get("compute_dtype", "fp32"),
                                       int(res.get("trainer_code_version", 1))), seed, num_labels,
                           pool.iloc[pos], evalf)
        if reused_training(study, tdir.name, key, seed, num_labels) is not None:
            out[tdir.name] = key
    return out


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
VALIDATION_FILE = "validation_predictions.parquet"
"""Per-row predictions on the validation holdout (``dataset.validation_holdout``), the
columns of ``predictions.parquet``: what a study chooses among its arms by, apart from
the eval set (:mod:`dataselect.report.validation`)."""
VALIDATION_INPUT = "validation.parquet"
"""``inputs/validation.parquet``: the validation rows (``id``, ``text``, ``label``), when the study has them."""
VALIDATION_EMBEDDING = "validation_embedding.npy"
"""``inputs/validation_embedding.npy``: their embeddings, for probe trials."""


def predictions_frame(rows: pd.DataFrame, preds: EvalPredictions) -> pd.DataFrame:
    """``id``, ``label``, ``pred``, ``prob_<k>`` per row of ``rows`` (eval or validation)."""
    table = {"id": rows["id"].to_numpy(np.int64), "label": rows["label"].to_numpy(np.int64),
             "pred": np.asarray(preds.pred, np.int64)}
    if preds.proba is not None and preds.proba.size:
        for k in range(preds.proba.shape[1]):
            table[f"prob_{k}"] = np.asarray(preds.proba[:, k], np.float32)
    return pd.DataFrame(table)


def write_trial_files(trial_dir: Path, chash: str, evalf: pd.DataFrame,
                      preds: EvalPredictions | pd.DataFrame, kept: pd.DataFrame) -> None:
    """Per-row evidence of one trial, each file atomic and stamped with the trial's config hash.

    ``predictions.parquet``: ``id``, ``label``, ``pred``, ``prob_<k>`` per eval
    row (the report's paired comparison reads these). ``kept.parquet``: the
    subset in pick order with the pool columns the sweep stored (``label``,
    ``original_label`` under label noise, ``n_words``, ``perplexity``...).
    ``preds`` may be another trial's ``predictions.parquet`` (a reused result).
    """
    frame = preds if isinstance(preds, pd.DataFrame) else predictions_frame(evalf, preds)
    _write_stamped(trial_dir / PREDICTIONS_FILE, frame, chash)
    cols = [c for c in kept.columns if c != "text"]
    _write_stamped(trial_dir / KEPT_FILE, kept[cols].reset_index(drop=True), chash)


def _write_stamped(path: Path, df: pd.DataFrame, chash: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tbl = pa.Table.from_pandas(df, preserve_index=False)
    tbl = tbl.replace_schema_metadata({**(tbl.schema.metadata or {}), b"dataselect_config_hash": chash.encode()})
    atomic_write(path, lambda tmp: pq.write_table(tbl, tmp))


def trial_files_current(trial_dir: Path, chash: str) -> bool:
    """Both per-row files exist and carry ``chash`` (else the trial runs again)."""
    return all(is_stamped(trial_dir / name, chash) for name in (PREDICTIONS_FILE, KEPT_FILE))


def is_stamped(path: Path, chash: str) -> bool:
    """``path`` is a parquet file stamped with the config hash ``chash``."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, ValueError):
        return False
    return meta.get(b"dataselect_config_hash", b"").decode() == chash


# --------------------------------------------------------------------------- stages
