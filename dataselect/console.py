"""Keep the sweep's console readable: third-party chatter goes to ``<study>/logs/``.

The console keeps this project's stage lines (``dataselect.*`` at INFO),
our per-stage progress bars, Tune's status tables (printed, not logged) and
every ERROR. Everything else, all levels, goes to
``<study>/logs/sweep-<time>.log``: Ray's and Ray Data's INFO/WARNING lines
(per-operator progress logging, execution plans, token-auth notices),
faiss's loader lines, and the rest of the Python logging tree. Ray worker
processes (trial and feature actors: transformers load reports, weight
loading bars) are not forwarded to the driver; their stdout/stderr stay in
the Ray session's ``logs/`` folder, linked as ``<study>/logs/ray``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
from collections.abc import Iterator
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _ConsoleFilter(logging.Filter):
    """Our INFO+, Tune's WARNING+ (a trial retried or errored), anyone's ERROR+."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        if record.name in ("dataselect", "__main__") or record.name.startswith("dataselect."):
            return True  # __main__: ``python -m dataselect.sweep``
        return record.name.startswith("ray.tune") and record.levelno >= logging.WARNING


def _console_handlers(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


@contextlib.contextmanager
def route_logs(study_dir: Path) -> Iterator[Path]:
    """Within the block, third-party log records go to a file under ``study_dir/logs``.

    Yields the file's path. Enter after the study folder is locked and before
    Ray starts (the ``ray``, ``ray.data`` and ``transformers`` loggers do not
    propagate to the root logger, so their console handlers are filtered one by
    one); on exit every handler, filter and setting is put back.
    """
    logs = study_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"sweep-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.log"
    fh = logging.FileHandler(path, encoding="utf-8")
    fh.setLevel(logging.DEBUG)
    fh.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    import ray  # noqa: F401 - configures the "ray" logger
    import ray.data  # configures the "ray.data" logger
    from transformers.utils import logging as hf_logging

    hf_logging.get_logger()  # configures "transformers" (own stderr handler, no propagation)

    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format=_FORMAT, datefmt="%H:%M:%S")
    level = root.level
    # Records below the root's level never reach the file: let INFO through; the
    # console filter keeps third-party INFO off the terminal.
    root.setLevel(min(level, logging.INFO))
    flt = _ConsoleFilter()
    filtered: list[logging.Handler] = []
    attached: list[logging.Logger] = []
    for name in ("", "ray", "ray.data", "transformers"):
        logger = logging.getLogger(name)
        for h in _console_handlers(logger):
            h.addFilter(flt)
            filtered.append(h)
        if fh not in logger.handlers and (not name or not logger.propagate):
            logger.addHandler(fh)
            attached.append(logger)
    # Our stage bars ("embedding shards") say the progress; Ray Data's own per-operator
    # bars (or, off a TTY, progress log lines every few seconds) would repeat it.
    ctx = ray.data.DataContext.get_current()
    bars = ctx.enable_progress_bars
    ctx.enable_progress_bars = False
    try:
        yield path
    finally:
        ctx.enable_progress_bars = bars
        for h in filtered:
            h.removeFilter(flt)
        for logger in attached:
            logger.removeHandler(fh)
        root.setLevel(level)
        fh.close()


def link_ray_logs(study_dir: Path) -> Path | None:
    """Link ``<study>/logs/ray`` to this Ray session's log folder (worker output)."""
    try:
        import ray

        session = Path(ray._private.worker._global_node.get_session_dir_path())
    except Exception:  # noqa: BLE001 - a client connection has no local session dir
        return None
    link = study_dir / "logs" / "ray"
    try:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(session / "logs", target_is_directory=True)
    except OSError:
        return None
    return link


def readable_tune_output() -> None:
    """Tune's console as a short status table: selector, fraction, seed, accuracy.

    Tune's reporter (Ray 2.60, pinned) names its parameter columns after the
    grid axes, and the ``cell`` axis is a dict it prints cut from the left
    ("... 'fraction': 0.5}"); it also prints a config table when each trial
    starts and a ~40-line result table when it ends (22 of each in the local
    study). Here the column shows ``cell/selector``, and the per-trial tables
    appear only at ``verbose=2``; the status table (every 2 min and at the end)
    and the trial names (``<selector>_f<fraction>_s<seed>``) remain. Metric
    columns are the first four numbers a trial reports, so trials report
    ``fraction, seed, accuracy, macro_f1`` first (:func:`dataselect.sweep.run_trial`).
    Private API: skipped silently if Tune's output module changes.
    """
    try:
        from ray.tune.experimental import output
    except ImportError:
        return
    if getattr(output, "_dataselect_readable", False):
        return
    infer = getattr(output, "_infer_params", None)
    base = getattr(output, "TuneReporterBase", None)
    if infer is None or base is None or not hasattr(base, "_start_end_verbosity"):
        return

    def _infer_params(config: dict) -> list[str]:
        names = {"cell": ["cell/selector"], "run": ["run/cell/selector", "run/seed"]}  # see sweep.trial_runs
        return [q for p in infer(config) for q in names.get(p, [p])]

    output._infer_params = _infer_params
    base._start_end_verbosity = output.AirVerbosity.VERBOSE
    # One status table every 2 minutes (Tune: 30 s); dataselect.tune_callbacks.TrialLines
    # says one line per finished trial in between.
    if hasattr(base, "_heartbeat_freq"):
        base._heartbeat_freq = 120
    output._dataselect_readable = True


def _system_failure(err: BaseException) -> BaseException | None:
    """The Ray system failure behind ``err`` (a dead worker, node or lost object), else None."""
    try:
        from ray import exceptions as rx
    except ImportError:
        return None
    system = (rx.RayActorError, rx.WorkerCrashedError, rx.NodeDiedError, rx.ObjectLostError,
              rx.OutOfMemoryError, rx.LocalRayletDiedError, rx.ObjectStoreFullError, rx.OutOfDiskError)
    if isinstance(err, system):
        return err
    if isinstance(err, rx.RayTaskError):
        cause = err.as_instanceof_cause()
        if isinstance(cause, system):
            return cause
    return None


@contextlib.contextmanager
def stage(name: str, study_dir: Path, logfile: Path) -> Iterator[None]:
    """Turn a Ray worker or node dying inside ``name`` into one line naming the logs.

    The full traceback goes to ``logfile`` only. Errors of the stage's own
    code (and :class:`~dataselect.errors.UserError`) pass through unchanged.
    """
    from dataselect.errors import StageError

    try:
        yield
    except Exception as err:
        cause = _system_failure(err)
        if cause is None:
            raise
        # INFO on a non-dataselect logger: the log file only, not the console.
        logging.getLogger("traceback").info("%s stage failed", name, exc_info=True)
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:200]
        raise StageError(f"{name} stage: a Ray worker or node died ({type(cause).__name__}: {first}); "
                         f"traceback in {logfile}, worker logs in {study_dir / 'logs' / 'ray'}; "
                         "rerun (cached shards and manifests are kept)") from None
