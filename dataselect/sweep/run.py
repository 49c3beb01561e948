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
unfinished and errored trials run again) of the same study only: a config,
data, code, inputs or selections that differ from what the study ran with
stop it with one line (:mod:`dataselect.sweep.resume`); a grid that only
grew starts a new experiment over the whole grid, its finished trials reused.
A Tune state that cannot be restored (damaged, another layout) is moved aside
and a new experiment started; one not owned by the running user is refused.
Tune saves its experiment state at most every ``TUNE_GLOBAL_CHECKPOINT_S`` seconds, so a trial that
finished just before a crash can look unfinished; each trial therefore also
writes its result to ``trials/<trial>/result.json`` keyed by a hash of its
full config, and a relaunched trial whose result is there reports it
without training again.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataselect.core.config import StudyConfig
from dataselect.features.table_ref import TableRef
from dataselect.sweep.confirm import preregister
from dataselect.sweep.inputs import (
    inputs_key,
    stage_features,
    target_table,
    validation_embedding,
    write_inputs,
    write_label_noise,
    write_study_meta,
    write_target_inputs,
)
from dataselect.sweep.select_stage import grid_specs, run_select_stage
from dataselect.sweep.stages import probe_column, resolve_standins
from dataselect.sweep.timeline import Timeline, trial_times
from dataselect.sweep.trial import cell_id, run_trial_reported, tune_trial_name

log = logging.getLogger(__name__)


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
    from dataselect.sweep.select_stage import FULL_KEY

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

    Data, models and ``output_dir`` are checked first (:mod:`dataselect.sweep.preflight`),
    before Ray starts or anything is written; then the study folder is locked
    (:mod:`dataselect.sweep.lock`) for the sweep's lifetime. Returns the path of ``report.md``.
    """
    from dataselect.sweep.lock import StudyLock
    from dataselect.sweep.preflight import output_error, preflight

    _tune_env()
    timeline = Timeline()
    with timeline.stage("preflight"):
        ds = preflight(cfg)
        study_archive(cfg)  # an archive that is named but missing or damaged stops here, before Ray
    study = cfg.study_dir.expanduser().resolve()
    try:
        with StudyLock(study):
            ident = _resume_checks(cfg, ds, study) if resume else None
            preregister(cfg, study)  # a confirmatory study's arms, fixed before anything trains
            return _sweep(cfg, ds, study, resume=resume, address=address, timeline=timeline, ident=ident)
    except OSError as err:
        user = output_error(err, cfg)
        if user is None:
            raise
        raise user from err


@dataclass
class _Resume:
    """What ``--resume`` found before Ray started: the stored study, this run, whether the grid grew."""

    stored: Any  # resume.Identity | None
    current: Any  # resume.Identity
    grid_grew: bool


def _resume_checks(cfg: StudyConfig, ds: Any, study: Path) -> _Resume:
    """``--resume``'s checks before Ray starts: the same study (config, data, code) and a Tune
    state this user owns (:mod:`dataselect.sweep.resume`)."""
    from dataselect.sweep.resume import (
        check_config,
        check_tune_state,
        current_identity,
        read_identity,
    )

    stored = read_identity(study)
    current = current_identity(cfg, ds.fingerprint)
    grew = check_config(cfg, current, stored)
    check_tune_state(study / "tune" / cfg.name)
    return _Resume(stored, current, grew)


def _sweep(cfg: StudyConfig, ds: Any, study: Path, *, resume: bool, address: str | None,
           timeline: Timeline, ident: _Resume | None = None) -> Path:
    from dataselect.core.errors import StageError, UserError, first_line, log_traceback
    from dataselect.sweep.console import route_logs
    from dataselect.sweep.preflight import output_error

    study.mkdir(parents=True, exist_ok=True)
    with route_logs(study) as logfile:
        log.info("logs: %s (third-party messages); Ray worker output: %s", logfile,
                 study / "logs" / "ray")
        try:
            return _sweep_logged(cfg, ds, study, resume=resume, address=address, logfile=logfile,
                                 timeline=timeline, ident=ident)
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
                  logfile: Path, timeline: Timeline, ident: _Resume | None = None) -> Path:
    from ray import tune

    from dataselect.core.errors import ReportError, first_line, log_traceback
    from dataselect.features.store import FeatureStore
    from dataselect.report import write_report
    from dataselect.sweep.callbacks import NoRetryOnOwnError, TrialLines
    from dataselect.sweep.console import link_ray_logs, stage
    from dataselect.sweep.ray_runtime import init_ray
    from dataselect.sweep.resume import (
        check_inputs,
        check_selections,
        current_identity,
        manifest_names,
        write_identity,
    )

    with timeline.stage("ray_start"):
        init_ray(cfg.ray, address=address, log_to_driver=False)
    link_ray_logs(study)
    declared = cfg  # the report names models as the config wrote them (e.g. standin:qwen3)
    with timeline.stage("standins"):
        cfg = resolve_standins(cfg, ds)
    with stage("features", study, logfile), timeline.stage("features"):
        table, features_fp, eval_emb = stage_features(cfg, ds)
        target = target_table(cfg, ds)
        probe_col = probe_column(cfg, table) if cfg.trainer.mode == "probe" else None
        validation_emb = validation_embedding(cfg, ds, probe_col)
    stored = ident.stored if ident is not None else None
    current = ident.current if ident is not None else current_identity(declared, ds.fingerprint)
    current.inputs = inputs_key(ds, features_fp, eval_emb, probe_col)
    check_inputs(cfg, stored, current.inputs)  # before inputs/ of the old run is rewritten
    write_inputs(study, ds, table, eval_emb, features_fp, probe_col, validation_emb)
    if target is not None:
        write_target_inputs(study, cfg, ds, table, target)
    write_label_noise(study, ds)
    # Select tasks read the saved table's shards themselves (no driver copy);
    # only a pool without stored features (no selector reads any) goes in memory.
    ref = TableRef(cfg.cache_root / "features", features_fp)
    source = ref if ref.exists() else {k: table[k] for k in ("id", "label") if k in table}
    del table
    with stage("select", study, logfile), timeline.stage("select"):
        selections = run_select_stage(
            cfg, source, features_fingerprint=features_fp, manifest_dir=study / "manifests",
            target=None if target is None else TableRef(cfg.cache_root / "features", target.fingerprint),
            transductive=ds.target is not None and ds.target.transductive)
    cells = [{"selector": s.key, "name": s.name, "params": dict(s.params), "fraction": f}
             for s, f in grid_specs(cfg)]
    runs = trial_runs(cfg, cells)
    sel_map = {cell_id(*k): {"path": str(r.path) if r.path else None, "seconds": r.seconds,
                              "budget": r.budget, "error": r.error, "traceback": r.traceback}
               for k, r in selections.items()}
    current.manifests = manifest_names(sel_map)
    check_selections(cfg, stored, current.manifests)  # before study.json of the old run is rewritten
    fstore = FeatureStore(cfg.cache_root / "features")
    costs = {"pool": fstore.family_costs(features_fp)}
    if target is not None:
        costs["target"] = fstore.family_costs(target.fingerprint)
    write_study_meta(declared, ds, study, len(runs), selections, probe_col, feature_costs=costs)

    # A cache_dir that is another study's folder lends its trained trials too:
    # one whose rows, texts, trainer and seed match is adopted (trial.reused_training).
    reuse_from = [str(cfg.lending_study)] if cfg.lending_study is not None else []
    if (archive := study_archive(cfg)) is not None:  # then its archive's (trial.reused_archived)
        log.info("archive %s: its finished fine-tune trials are adopted where they trained what this "
                 "study would train", archive)
        reuse_from.append(str(archive))
    trainable = tune.with_resources(
        tune.with_parameters(run_trial_reported, study_dir=str(study),
                             trainer=cfg.trainer.model_dump(mode="json"),
                             num_labels=ds.num_labels, selections=sel_map, inputs_key=current.inputs,
                             label_names=list(ds.label_names), reuse_from=reuse_from),
        {"cpu": cfg.ray.cpus_per_trial, "gpu": cfg.ray.gpus_per_trial},
    )
    storage = study / "tune"
    exp_dir = storage / cfg.name
    tuner = None
    if resume and ident is not None and ident.grid_grew:
        resume = False  # a new experiment over the grown grid (resume.check_config said so)
        restart = True
    else:
        restart = False
    if resume and _can_restore(tune, exp_dir):
        log.info("resuming Tune experiment %s", exp_dir)
        try:
            tuner = tune.Tuner.restore(str(exp_dir), trainable, resume_errored=True)
        except Exception as err:  # noqa: BLE001 - any state Tune cannot load is a cache miss
            # Tune pickles its experiment state: a damaged one (UnpicklingError, a truncated
            # file) or one written by another dataselect layout cannot be loaded. The
            # trials' own results are plain files and still reused.
            log_traceback(f"--resume: Tune could not restore {exp_dir}")
            old = exp_dir.with_name(f"{exp_dir.name}.unrestorable-{_dt.datetime.now():%Y%m%d-%H%M%S}")
            log.warning("--resume: cannot restore the Tune experiment %s (%s); kept as %s for inspection "
                        "and starting a new one: finished trials are reused from %s", exp_dir,
                        first_line(err)[:200], old.name, study / "trials")
            exp_dir.rename(old)
            resume = False
    if tuner is None:
        if restart and exp_dir.exists():
            old = exp_dir.with_name(f"{exp_dir.name}.prev-{_dt.datetime.now():%Y%m%d-%H%M%S}")
            log.info("the grid grew: Tune experiment %s moved to %s; a new one runs the whole grid",
                     exp_dir, old.name)
            exp_dir.rename(old)
        elif resume:
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
                trial_name_creator=tune_trial_name, trial_dirname_creator=tune_trial_name,
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
    # What this experiment's results depend on, for the next --resume (resume.py).
    write_identity(study, current)
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


def study_archive(cfg: StudyConfig) -> Path | None:
    """The study archive whose trials this study may adopt (config ``archive``), checked whole.

    ``auto`` without an archive in ``reports/<name>`` is None; a folder named
    explicitly that holds none, or an archive whose files are not the ones its
    ``archive.json`` lists, is an error (:class:`~dataselect.core.errors.CacheError`).
    """
    from dataselect.report.archive import is_archive, open_archive

    path = cfg.archive_dir
    if path is None or (cfg.archive == "auto" and not is_archive(path)):
        return None
    open_archive(path)
    return path.resolve()


def _can_restore(tune: Any, exp_dir: Path) -> bool:
    """``Tuner.can_restore``; a state too damaged to tell is not restorable."""
    try:
        return bool(tune.Tuner.can_restore(str(exp_dir)))
    except Exception:  # noqa: BLE001 - e.g. an unreadable folder: restore would fail the same way
        return exp_dir.is_dir()


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
