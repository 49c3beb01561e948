"""The whole grid through Ray Tune: features → selections → one trial per cell → report.

``python -m dataselect.sweep GRID.yaml [--resume] [--address ADDR]``

Layout under ``<study_dir>``::

    features/            feature store (cached shards)
    manifests/           one parquet per (selector, budget, seed, features) key
    inputs/              pool/eval rows (+ embeddings for probes) the trials read
    tune/<name>/         the Tune experiment (one folder per trial, result.json)
    trials/<trial>/      trial-side result cache + attempts log (see below)
    tensorboard/<trial>/ per-trial scalars and HParams
    report/              results.parquet/csv, report.md, figures

Trials read rows, embeddings and manifests from disk (the study folder must
be on storage every node sees, as Tune's ``storage_path`` already is), so
nothing large travels through the driver.

Resume. ``--resume`` restores the Tune experiment (``Tuner.restore``,
unfinished and errored trials run again). Tune saves its experiment state
at most every ``TUNE_GLOBAL_CHECKPOINT_S`` seconds, so a trial that
finished just before a crash can look unfinished; each trial therefore also
writes its result to ``trials/<trial>/result.json`` keyed by a hash of its
full config, and a relaunched trial whose result is there reports it
without training again.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from dataselect.config import StudyConfig, TrainerConfig, file_slug
from dataselect.features.store import TableRef
from dataselect.select_stage import CellKey, SelectionResult, grid_specs, run_select_stage
from dataselect.timeline import Timeline, trial_times
from dataselect.train import PREDICTIONS_KEY, EvalPredictions

log = logging.getLogger(__name__)

_INPUTS_VERSION = 1


# --------------------------------------------------------------------------- naming
def trial_name_for(selector: str, fraction: float, seed: int) -> str:
    """Readable, unique trial name: ``<selector>_f<fraction>_s<seed>`` (labels that
    slug alike are refused by the config)."""
    return f"{file_slug(selector)}_f{fraction:g}_s{seed}"


def _trial_name(trial: Any) -> str:
    c = trial.config.get("run", trial.config)
    return trial_name_for(c["cell"]["selector"], c["cell"]["fraction"], c["seed"])


def _cell_id(selector: str, fraction: float, seed: int) -> str:
    return f"{selector}|{fraction!r}|{seed}"


def _config_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _atomic_write_text(path: Path, text: str) -> None:
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
) -> None:
    """Tune trainable: train on one selection and ``tune.report`` its metrics.

    ``config`` is ``{"cell": {selector, name, params, fraction}, "seed": int}``.
    A failed selection raises, so Tune marks the trial ERROR and moves on.
    """
    from ray import tune

    from dataselect.manifest import read_manifest
    from dataselect.train import finetune, probe

    config = config.get("run", config)  # a grid with a seed-limited whole-pool reference nests it
    cell, seed = config["cell"], int(config["seed"])
    name = trial_name_for(cell["selector"], cell["fraction"], seed)
    sel = selections[_cell_id(cell["selector"], cell["fraction"], seed)]
    study = Path(study_dir)
    tcfg = TrainerConfig(**trainer)
    chash = _config_hash({"cell": cell, "seed": seed, "trainer": trainer, "inputs": inputs_key,
                          "manifest": sel["path"], "num_labels": num_labels})
    trial_dir = study / "trials" / name
    trial_dir.mkdir(parents=True, exist_ok=True)
    cached = trial_dir / "result.json"
    if cached.is_file():
        prev = json.loads(cached.read_text())
        if prev.get("config_hash") == chash and trial_files_current(trial_dir, chash):
            log.info("trial %s: reusing finished result (%s)", name, cached)
            tune.report(prev["result"])
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
    shutil.rmtree(logdir, ignore_errors=True)  # a relaunched trial starts a clean run
    hp = {"selector": cell["selector"], "fraction": cell["fraction"]}
    evalf = pd.read_parquet(inputs / "eval.parquet")
    if tcfg.mode == "probe":
        emb = np.load(inputs / "pool_embedding.npy", mmap_mode="r")
        eval_emb = np.load(inputs / "eval_embedding.npy")
        res = probe(np.asarray(emb[np.sort(pos)]), pool["label"].to_numpy()[np.sort(pos)], eval_emb,
                    evalf["label"].to_numpy(), tcfg, seed=seed, num_labels=num_labels, logdir=logdir,
                    hparams=hp, label_names=label_names)
    else:
        res = finetune(pool.iloc[pos].reset_index(drop=True), evalf, tcfg, num_labels=num_labels,
                       seed=seed, logdir=logdir, progress=False, hparams=hp, label_names=label_names)
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
    _atomic_write_text(cached, json.dumps({"config_hash": chash, "result": out}, default=float))
    tune.report(out)


class TrialError(RuntimeError):
    """A trial failed by its own error (reported, then raised; not retried)."""


def run_trial_reported(config: dict[str, Any], **kwargs: Any) -> None:
    """The Tune trainable: :func:`run_trial`, its own errors reported, then raised.

    Tune's ``FailureConfig`` retries every raised error, but only a lost worker
    or node is worth retrying: a failed selection or a bad manifest fails the
    same way every time. Such errors are caught here, written to
    ``trials/<trial>/error.txt``, reported as ``{"trial_error": ...}`` (on which
    :class:`~dataselect.tune_callbacks.NoRetryOnOwnError` turns the trial's
    retries off) and raised as :class:`TrialError`: the trial ends ERROR after
    one attempt, and ``--resume`` runs it again like any errored trial. A dead
    process raises nothing here, so Tune sees a lost actor and restarts the trial.
    """
    import traceback

    from ray import tune

    from dataselect.errors import first_line

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
        _atomic_write_text(trial_dir / "error.txt", traceback.format_exc())
        log.error("trial %s failed (not retried): %s", name, msg)
    tune.report({"trial_error": msg[:500], "selector": cell["selector"], "fraction": cell["fraction"]})
    raise TrialError(f"trial {name}: {msg}")


PREDICTIONS_FILE = "predictions.parquet"
KEPT_FILE = "kept.parquet"


def write_trial_files(trial_dir: Path, chash: str, evalf: pd.DataFrame, preds: EvalPredictions,
                      kept: pd.DataFrame) -> None:
    """Per-row evidence of one trial, each file atomic and stamped with the trial's config hash.

    ``predictions.parquet``: ``id``, ``label``, ``pred``, ``prob_<k>`` per eval
    row (the report's bootstrap resamples these). ``kept.parquet``: the
    subset in pick order with the pool columns the sweep stored (``label``,
    ``original_label`` under label noise, ``n_words``, ``perplexity``...).
    """
    table = {"id": evalf["id"].to_numpy(np.int64), "label": evalf["label"].to_numpy(np.int64),
             "pred": np.asarray(preds.pred, np.int64)}
    if preds.proba is not None and preds.proba.size:
        for k in range(preds.proba.shape[1]):
            table[f"prob_{k}"] = np.asarray(preds.proba[:, k], np.float32)
    _write_stamped(trial_dir / PREDICTIONS_FILE, pd.DataFrame(table), chash)
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
def _features(cfg: StudyConfig, ds: Any) -> tuple[dict[str, np.ndarray], str, np.ndarray | None]:
    """Pool feature table (+ its fingerprint) and eval embeddings when the trainer probes.

    A fine-tune sweep whose selectors read no features (``random``, ``full``)
    skips the feature stage: an encoder pass over the pool would buy nothing.
    """
    from dataselect.selectors import get_selector

    needs = {c for s in cfg.selectors for c in get_selector(s.name, **dict(s.params)).required()}
    if cfg.trainer.mode == "finetune" and not needs - {"id", "label"} and cfg.target is None:
        log.info("no selector reads features: skipping the feature stage")
        table = {"id": ds.train["id"].to_numpy(np.int64), "label": ds.train["label"].to_numpy(np.int64)}
        return table, _config_hash({"rows": ds.fingerprint, "columns": ["id", "label"]}), None

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


def probe_column(cfg: StudyConfig, table: Any) -> str:
    """The feature column a probe trains on: ``trainer.probe_features`` if stored, else ``embedding``."""
    want = cfg.trainer.probe_features
    if want in table:
        return want
    log.warning("trainer.probe_features=%s is not in the feature store (features.normalize: false?); "
                "the probe uses raw 'embedding'", want)
    return "embedding"


_KEPT_FEATURES = ("perplexity", "pseudo_perplexity")
"""Pool feature columns copied next to the rows, so each trial's ``kept.parquet`` holds them."""

TARGET_INPUTS = "target"
"""``inputs/target/``: what the report measures a subset's distance to the target by:
``target.parquet`` (``id``, ``n_words``), ``target_embedding.npy``, ``eval_embedding.npy``
and ``pool_embedding.npy`` (one embedding column; pool rows in ``pool.parquet`` order)."""


def _target_table(cfg: StudyConfig, ds: Any) -> Any:
    """The target's feature table (cached like the pool's), or None."""
    from dataselect.pipeline import target_features

    return target_features(cfg, ds, columns=("embedding", "embedding_norm"))


def _write_target_inputs(study: Path, cfg: StudyConfig, ds: Any, pool: dict[str, np.ndarray],
                         target: Any) -> None:
    """``inputs/target/``: target rows' lengths and embeddings beside the pool's and the eval set's."""
    from dataselect.features import compute_features

    out = study / "inputs" / TARGET_INPUTS
    out.mkdir(parents=True, exist_ok=True)
    col = "embedding_norm" if "embedding_norm" in target and "embedding_norm" in pool else "embedding"
    ev = compute_features(ds.eval, cfg.features, cfg.cache_root / "features", which={"embedding"})
    np.save(out / "eval_embedding.npy", np.asarray(ev[col], np.float32))
    frame = ds.target.frame
    rows = pd.DataFrame({"id": frame["id"].to_numpy(np.int64),
                         "n_words": frame["text"].str.split().str.len().astype(np.int32)})
    rows.to_parquet(out / "target.parquet", index=False)
    pos = pd.Index(np.asarray(target["id"])).get_indexer(frame["id"])
    np.save(out / "target_embedding.npy", np.asarray(target[col], np.float32)[pos])
    np.save(out / "pool_embedding.npy", np.asarray(pool[col], np.float32))


def _write_inputs(study: Path, ds: Any, table: dict[str, np.ndarray], eval_emb: np.ndarray | None,
                  features_fp: str, probe_col: str | None = None) -> str:
    """Rows and embeddings the trials read; rewritten only when their key changes.

    ``pool.parquet`` also carries what the report describes subsets by:
    ``n_words`` (whitespace tokens), ``original_label`` under label noise,
    and perplexity columns when computed.
    """
    key = _config_hash({"v": _INPUTS_VERSION, "data": ds.fingerprint, "features": features_fp,
                        "probe": eval_emb is not None, "probe_col": probe_col})
    inputs = study / "inputs"
    stamp = inputs / "inputs.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("key") == key:
        return key
    inputs.mkdir(parents=True, exist_ok=True)
    if not np.array_equal(np.asarray(table["id"]), ds.train["id"].to_numpy()):
        raise RuntimeError("feature table rows are not aligned with the dataset's train pool")
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
    pool.to_parquet(inputs / "pool.parquet", index=False)
    ds.eval[["id", "text", "label"]].to_parquet(inputs / "eval.parquet", index=False)
    if eval_emb is not None:
        np.save(inputs / "pool_embedding.npy", np.asarray(table[probe_col or "embedding"], dtype=np.float32))
        np.save(inputs / "eval_embedding.npy", eval_emb)
    _atomic_write_text(stamp, json.dumps({"key": key}))
    return key


def _write_label_noise(study: Path, ds: Any) -> None:
    """``label_noise.parquet`` (``id``, ``original_label``, ``noisy_label``) when the pool is noisy."""
    path = study / "label_noise.parquet"
    if ds.noise is None:
        path.unlink(missing_ok=True)  # a clean re-run of a once-noisy study
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    ds.noise.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _write_study_meta(cfg: StudyConfig, ds: Any, study: Path, n_trials: int,
                      selections: dict[CellKey, SelectionResult], probe_col: str | None = None) -> None:
    """What the report must state honestly: models, stand-ins, pool size, seeds."""
    from dataselect.config import DEFAULT_CAUSAL_LM, DEFAULT_ENCODER

    def describe(ref: str | None, default: str | None) -> dict[str, Any] | None:
        if ref is None:
            return None
        info: dict[str, Any] = {"ref": ref, "default": default}
        try:
            from dataselect.models import OFFLINE_MODELS, describe_model

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
                    "label_names": list(ds.label_names), "fingerprint": ds.fingerprint},
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
        "selections": [r.to_dict() for r in selections.values()],
    }
    _atomic_write_text(study / "study.json", json.dumps(meta, indent=2, default=str))


def _wait_for_free_cpus(timeout_s: float = 60.0) -> None:
    """Give the feature stage's Ray Data actors a moment to release their CPUs.

    Tune sizes its first wave of trials by the CPUs free when it starts; actors
    still shutting down then squeeze the sweep onto fewer nodes than it could use.
    Returns as soon as every CPU is free (at once on an idle cluster); the
    timeout only bounds a cluster where something else holds CPUs.
    """
    import ray

    total = ray.cluster_resources().get("CPU", 0.0)
    deadline = time.monotonic() + timeout_s
    while ray.available_resources().get("CPU", 0.0) < total and time.monotonic() < deadline:
        time.sleep(0.25)


def trial_runs(cfg: StudyConfig, cells: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """(cell, seed) of every trial: the full grid, less whole-pool seeds past ``full_reference_seeds``."""
    from dataselect.select_stage import FULL_KEY

    n_full = cfg.grid.full_reference_seeds
    full_seeds = set(cfg.grid.seeds[:n_full] if n_full is not None else cfg.grid.seeds)
    return [(c, sd) for c in cells for sd in cfg.grid.seeds
            if c["selector"] != FULL_KEY or sd in full_seeds]


def _tune_env() -> None:
    # Save Tune's experiment state at most every second instead of Tune's
    # adaptive >= 10 s, so a crash loses little; the trial-side cache covers the rest.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    # Tune's console reporter: the classic one, which verbose=0 silences whole (the
    # newer one prints its start box and a TensorBoard hint into Ray's session
    # folder at any verbosity). The trial lines and status table are ours.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def run_sweep(cfg: StudyConfig, *, resume: bool = False, address: str | None = None) -> Path:
    """Run (or with ``resume`` continue) the study's sweep and write its report.

    Data, models and ``output_dir`` are checked first (:mod:`dataselect.preflight`),
    before Ray starts or anything is written; then the study folder is locked
    (:mod:`dataselect.lock`) for the sweep's lifetime. Returns the path of ``report.md``.
    """
    from dataselect.lock import StudyLock
    from dataselect.preflight import output_error, preflight

    _tune_env()
    timeline = Timeline()
    with timeline.stage("preflight"):
        ds = preflight(cfg)
    study = cfg.study_dir.expanduser().resolve()
    try:
        with StudyLock(study):
            return _sweep(cfg, ds, study, resume=resume, address=address, timeline=timeline)
    except OSError as err:
        user = output_error(err, cfg)
        if user is None:
            raise
        raise user from err


def _sweep(cfg: StudyConfig, ds: Any, study: Path, *, resume: bool, address: str | None,
           timeline: Timeline) -> Path:
    from dataselect.console import route_logs
    from dataselect.errors import StageError, UserError, first_line, log_traceback
    from dataselect.preflight import output_error

    study.mkdir(parents=True, exist_ok=True)
    with route_logs(study) as logfile:
        log.info("logs: %s (third-party messages); Ray worker output: %s", logfile,
                 study / "logs" / "ray")
        try:
            return _sweep_logged(cfg, ds, study, resume=resume, address=address, logfile=logfile,
                                 timeline=timeline)
        except Exception as err:
            # The whole story (cause chain included) goes to the log file; the
            # console gets one line: the user's error as it is, anything else named as ours.
            log_traceback(f"sweep stopped: {first_line(err)}")
            if isinstance(err, UserError) or (isinstance(err, OSError) and output_error(err, cfg)):
                raise
            raise StageError(f"sweep failed: {first_line(err)[:300]} (an error in dataselect or a "
                             f"library, not in the config); traceback in {logfile}; finished "
                             "trials, manifests and features are kept: fix, then rerun with --resume"
                             ) from err


def _sweep_logged(cfg: StudyConfig, ds: Any, study: Path, *, resume: bool, address: str | None,
                  logfile: Path, timeline: Timeline) -> Path:
    from ray import tune

    from dataselect.console import link_ray_logs, stage
    from dataselect.errors import ReportError, first_line, log_traceback
    from dataselect.pipeline import resolve_standins
    from dataselect.ray_runtime import init_ray
    from dataselect.report import write_report
    from dataselect.tune_callbacks import NoRetryOnOwnError, TrialLines

    with timeline.stage("ray_start"):
        init_ray(cfg.ray, address=address, log_to_driver=False)
    link_ray_logs(study)
    declared = cfg  # the report names models as the config wrote them (e.g. standin:qwen3)
    with timeline.stage("standins"):
        cfg = resolve_standins(cfg, ds)
    with stage("features", study, logfile), timeline.stage("features"):
        table, features_fp, eval_emb = _features(cfg, ds)
        target = _target_table(cfg, ds)
    probe_col = probe_column(cfg, table) if cfg.trainer.mode == "probe" else None
    inputs_key = _write_inputs(study, ds, table, eval_emb, features_fp, probe_col)
    if target is not None:
        _write_target_inputs(study, cfg, ds, table, target)
    _write_label_noise(study, ds)
    # Select tasks read the saved table's shards themselves (no driver copy);
    # only a pool without stored features (no selector reads any) goes in memory.
    ref = TableRef(cfg.cache_root / "features", features_fp)
    source = ref if ref.exists() else {k: table[k] for k in ("id", "label") if k in table}
    del table
    with stage("select", study, logfile), timeline.stage("select"):
        selections = run_select_stage(
            cfg, source, features_fingerprint=features_fp, manifest_dir=study / "manifests",
            target=None if target is None else TableRef(cfg.cache_root / "features", target.fingerprint))
    cells = [{"selector": s.key, "name": s.name, "params": dict(s.params), "fraction": f}
             for s, f in grid_specs(cfg)]
    runs = trial_runs(cfg, cells)
    _write_study_meta(declared, ds, study, len(runs), selections, probe_col)

    sel_map = {_cell_id(*k): {"path": str(r.path) if r.path else None, "seconds": r.seconds,
                              "budget": r.budget, "error": r.error, "traceback": r.traceback}
               for k, r in selections.items()}
    trainable = tune.with_resources(
        tune.with_parameters(run_trial_reported, study_dir=str(study),
                             trainer=cfg.trainer.model_dump(mode="json"),
                             num_labels=ds.num_labels, selections=sel_map, inputs_key=inputs_key,
                             label_names=list(ds.label_names)),
        {"cpu": cfg.ray.cpus_per_trial, "gpu": cfg.ray.gpus_per_trial},
    )
    storage = study / "tune"
    exp_dir = storage / cfg.name
    if resume and tune.Tuner.can_restore(str(exp_dir)):
        log.info("resuming Tune experiment %s", exp_dir)
        tuner = tune.Tuner.restore(str(exp_dir), trainable, resume_errored=True)
    else:
        if resume:
            log.warning("--resume: no Tune experiment to restore at %s; starting a new one", exp_dir)
        elif exp_dir.exists():
            # Never mix two experiments in one folder; finished trials are
            # still reused through the trial-side cache.
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            old = exp_dir.with_name(f"{exp_dir.name}.prev-{stamp}")
            log.warning("Tune experiment %s exists; moving it to %s (use --resume to continue it)",
                        exp_dir, old.name)
            exp_dir.rename(old)
        tuner = tune.Tuner(
            trainable,
            param_space=({"cell": tune.grid_search(cells), "seed": tune.grid_search(list(cfg.grid.seeds))}
                         if len(runs) == len(cells) * len(cfg.grid.seeds)
                         else {"run": tune.grid_search([{"cell": c, "seed": sd} for c, sd in runs])}),
            tune_config=tune.TuneConfig(
                max_concurrent_trials=cfg.ray.max_concurrent_trials,
                # Every trial asks for the same resources, so one actor can run many
                # trials: torch/transformers are imported once per actor, not per trial
                # (seconds each, more than a probe trial's work).
                reuse_actors=True,
                trial_name_creator=_trial_name, trial_dirname_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name=cfg.name, storage_path=str(storage),
                # Retries cover a dead worker or node only: NoRetryOnOwnError turns them
                # off for a trial that reported its own error (run_trial_reported).
                failure_config=tune.FailureConfig(max_failures=cfg.ray.max_trial_retries,
                                                  fail_fast=False),
                callbacks=[NoRetryOnOwnError(), TrialLines(len(runs), slots=_trial_slots(cfg))],
                # Tune's console output off: TrialLines says what it said, once per change.
                verbose=0,
            ),
        )
    with timeline.stage("tune_wait_cpus"):
        _wait_for_free_cpus()
    with timeline.stage("tune"):
        grid = tuner.fit()
    n_err = sum(1 for r in grid if r.error is not None or (r.metrics or {}).get("trial_error"))
    log.info("sweep finished: %d trials, %d errored", len(grid), n_err)
    failed: Exception | None = None
    with timeline.stage("report"):
        try:
            report = write_report(study)
        except Exception as err:  # noqa: BLE001 - said below, after the timeline is written
            failed = err
            log_traceback("report failed")
    _log_timeline(timeline.write(study, trial_times(grid), _trial_slots(cfg)))
    if failed is not None:
        raise ReportError(
            f"report: all {len(grid)} trials ran ({n_err} errored) and every result is kept "
            f"({study / 'trials'}, {study / 'tune'}), but writing the report failed "
            f"({first_line(failed)[:300]}); traceback in {logfile}; rebuild it from disk, without "
            f"training: python -m dataselect report {study}") from failed
    return report


def _trial_slots(cfg: StudyConfig) -> int:
    """Trials Tune can run at once: CPUs (or GPUs) per trial, capped by ``max_concurrent_trials``."""
    import ray

    res = ray.cluster_resources()
    slots = [int(res.get("CPU", 1) // cfg.ray.cpus_per_trial)]
    if cfg.ray.gpus_per_trial > 0:
        slots.append(int(res.get("GPU", 0) // cfg.ray.gpus_per_trial))
    if cfg.ray.max_concurrent_trials:
        slots.append(cfg.ray.max_concurrent_trials)
    return max(1, min(slots))


def _log_timeline(data: dict[str, Any]) -> None:
    o = data["overhead"]
    log.info("sweep timeline: %.0f s in all; ray start %.1f s, features %.1f s, select %.1f s, "
             "tune %.1f s (%d trials, %.1f s train + eval over %d slot(s), %.1f s trial set-up, "
             "%.1f s scheduling gaps), report %.1f s; overhead %.1f s = %.1f %% (timeline.json)",
             o["total"], o.get("stage_ray_start", 0), o.get("stage_features", 0), o.get("stage_select", 0),
             o.get("stage_tune", 0), o["trials"], o["trial_work"], o["slots"], o["trial_setup"],
             o["tune_gaps"], o.get("stage_report", 0), o["overhead"], 100 * o["overhead_frac"])


# --------------------------------------------------------------------------- CLI
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Run a study's selector × fraction × seed grid through Ray Tune.")


@app.command()
def main(
    config: Annotated[Path, typer.Argument(help="Study config YAML.")],
    resume: Annotated[bool, typer.Option(help="Continue an interrupted sweep; finished trials are kept.")] = False,
    address: Annotated[str | None, typer.Option(help="Ray cluster address (else config ray.address, "
                                                     "else RAY_ADDRESS, else a local Ray).")] = None,
) -> None:
    """Features → selections → Tune trials → report (prints the report path)."""
    from dataselect.cli import setup_logging
    from dataselect.config import load_config
    from dataselect.errors import UserError, error_lines

    setup_logging()
    try:
        cfg = load_config(config)
        out = run_sweep(cfg, resume=resume, address=address)
    except UserError as err:
        for line in error_lines(err):
            typer.echo(line, err=True)
        raise typer.Exit(err.exit_code) from None
    typer.echo(f"report: {out}")


if __name__ == "__main__":
    app()
