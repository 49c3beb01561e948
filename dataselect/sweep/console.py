"""Keep the sweep's console readable: third-party chatter goes to ``<study>/logs/``.

The console keeps this project's stage lines (``dataselect.*`` at INFO),
our per-stage progress bars, the sweep's trial lines and status table
(:mod:`dataselect.sweep.callbacks`; Tune's own console output is off) and
every ERROR. Everything else, all levels, goes to
``<study>/logs/sweep-<time>.log``: Ray's and Ray Data's INFO/WARNING lines
(per-operator progress logging, execution plans, token-auth notices),
faiss's loader lines, and the rest of the Python logging tree. Ray worker
processes (trial and feature actors: transformers load reports, weight
loading bars) are not forwarded to the driver; their stdout/stderr stay in
the Ray session's ``logs/`` folder, linked as ``<study>/logs/ray``.

Only public settings and standard streams are used: logging handlers and
filters, ``DataContext.enable_progress_bars``, ``RunConfig(verbose=0)``, a
filter on ``sys.stdout`` for raylet notices and one on fd 2 for Ray's
native log lines; no Ray function is replaced.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dataselect.core.errors import TRACEBACK_LOGGER

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger(__name__)

# A line of Ray's C++ logger, as the driver's core worker writes it to fd 2:
# "[2026-12-01 00:00:22,652 E 1885 1885] core_worker.cc:2465: Actor with ...".
_NATIVE_LINE = re.compile(rb"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [DIWEF] \d+ \d+\] [^\n]*\n")
_NATIVE_HEAD = b"[0000-00-00 00:00:00,000 E"
"""Shape of a native line's start: a held-back tail is one while it still fits it."""
_BENIGN_NATIVE = (b"has constructor arguments in the object store and max_restarts > 0",)
"""Native ERROR lines that are no error of the run: Ray Data ``ray.put``s every actor
pool's constructor arguments, so each feature stage would print this one."""

WORKER_DEATHS: list[str] = []
"""First lines of the raylet's worker-death notices seen by this driver, oldest first."""


class _ConsoleFilter(logging.Filter):
    """Our INFO+, Tune's WARNING+ (a trial retried or errored), anyone's ERROR+."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("ray.tune") and record.exc_info:
            # Tune's "Trial task failed" traceback: the trial's line says it, its
            # error.txt and the log file hold the traceback.
            return False
        if record.name.startswith("ray.tune") and "Failed to fetch metrics for" in record.getMessage():
            # On --resume Tune lists every trial that had not started yet (one line
            # each, 192 in the families study); they simply run now.
            return False
        if record.levelno >= logging.ERROR:
            return True
        if record.name in ("dataselect", "__main__") or record.name.startswith("dataselect."):
            return True  # __main__: ``python -m dataselect.sweep``
        return record.name.startswith("ray.tune") and record.levelno >= logging.WARNING


def setup_logging(verbose: bool = False) -> None:
    """The console's log format; quiet third-party loggers (every command calls it first)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=_FORMAT,
        datefmt="%H:%M:%S",
    )
    # faiss's loader logs each SIMD build it tries at INFO, with a ModuleNotFoundError in it.
    for noisy in ("httpx", "urllib3", "filelock", "fsspec", "faiss", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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
    path, fh = _file_handler(study_dir, "sweep")
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
    for name in ("", "ray", "ray.data", "transformers", TRACEBACK_LOGGER):
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
        with native_lines_to(fh.stream), raylet_notices(study_dir / "logs" / "ray"):
            yield path
    finally:
        ctx.enable_progress_bars = bars
        for h in filtered:
            h.removeFilter(flt)
        for logger in attached:
            logger.removeHandler(fh)
        root.setLevel(level)
        fh.close()


def _file_handler(study_dir: Path, stem: str) -> tuple[Path, logging.FileHandler]:
    """``<study>/logs/<stem>-<time>.log`` and a handler that takes every level."""
    logs = study_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"{stem}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.log"
    fh = logging.FileHandler(path, encoding="utf-8", delay=True)
    fh.setLevel(logging.DEBUG)
    fh.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    return path, fh


@contextlib.contextmanager
def log_file(study_dir: Path, stem: str) -> Iterator[Path]:
    """Within the block, our log records and tracebacks also go to ``<study>/logs/<stem>-<time>.log``.

    For commands short of a sweep (``report``): no Ray, no console filtering;
    the file is created only when something is written to it.
    """
    path, fh = _file_handler(study_dir, stem)
    loggers = [logging.getLogger("dataselect"), logging.getLogger(TRACEBACK_LOGGER)]
    for logger in loggers:
        logger.addHandler(fh)
    try:
        yield path
    finally:
        for logger in loggers:
            logger.removeHandler(fh)
        fh.close()


def _native_head(tail: bytes) -> bool:
    """Whether ``tail`` (no newline yet) may still grow into a native log line's start."""
    for got, want in zip(tail, _NATIVE_HEAD, strict=False):
        if want == ord("0"):
            ok = chr(got).isdigit()
        elif want == ord("E"):
            ok = got in b"DIWEF"
        else:
            ok = got == want
        if not ok:
            return False
    return True


@contextlib.contextmanager
def native_lines_to(sink: object) -> Iterator[None]:
    """Within the block, Ray's C++ log lines written to fd 2 go to ``sink`` (a text stream).

    The driver's core worker logs straight to the process's stderr, past
    Python logging (``core_worker.cc: Actor ... has constructor arguments in
    the object store``, once per Ray Data actor pool). fd 2 is replaced by a
    pipe; a thread copies everything else (our progress bars, Python's
    stderr) through unchanged and at once, and moves native lines to ``sink``
    — except ERROR/FATAL lines that are not known to be benign, which stay on
    the console. A native line may arrive in pieces or in the middle of a
    progress bar's ``\r`` line; the part that could still be one is held
    back until its newline comes. Not used when stderr is not a real file
    descriptor (some test runners).
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    r, w = os.pipe()
    os.dup2(w, 2)
    os.close(w)

    def to_sink(line: bytes) -> None:
        keep = line[25:26] in (b"E", b"F") and not any(b in line for b in _BENIGN_NATIVE)
        if keep:
            os.write(saved, line)
            return
        try:
            sink.write(line.decode("utf-8", "replace"))  # type: ignore[attr-defined]
            sink.flush()  # type: ignore[attr-defined]
        except (OSError, ValueError):
            pass

    def pump() -> None:
        buf = b""
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            buf += chunk
            pos, out = 0, []
            for m in _NATIVE_LINE.finditer(buf):
                out.append(buf[pos:m.start()])
                to_sink(m.group())
                pos = m.end()
            rest = buf[pos:]
            cut = rest.rfind(b"[")
            if cut >= 0 and b"\n" not in rest[cut:] and _native_head(rest[cut:]):
                out.append(rest[:cut])
                buf = rest[cut:]
            else:
                out.append(rest)
                buf = b""
            data = b"".join(out)
            if data:
                os.write(saved, data)
        if buf:
            os.write(saved, buf)

    thread = threading.Thread(target=pump, name="dataselect-native-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump drains and stops
        thread.join(timeout=5)
        os.close(r)
        os.close(saved)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RAYLET_PREFIX = re.compile(r"^\(raylet(?:, ip=[^)]*)?\) ")
"""How Ray's driver prints a raylet notice: ``(raylet) <text>``, ``(raylet, ip=...)`` off this node."""


class _RayletNotices(io.TextIOBase):
    """sys.stdout for the sweep: raylet notices out, everything else through unchanged.

    Ray's driver prints each notice with one ``print`` (the text in one
    write, then its newline): a write that starts with the raylet prefix is
    taken whole, and the newline after it with it.
    """

    def __init__(self, out: Any, worker_logs: Path) -> None:
        self._out, self._worker_logs, self._eat_newline = out, worker_logs, False

    def write(self, text: str) -> int:
        plain = _ANSI.sub("", text)
        if (m := _RAYLET_PREFIX.match(plain)) is not None:
            _say_notice(plain[m.end():], self._worker_logs)
            self._eat_newline = True
            return len(text)
        if self._eat_newline and text == "\n":
            self._eat_newline = False
            return len(text)
        self._eat_newline = False
        return self._out.write(text)

    def flush(self) -> None:
        self._out.flush()

    def isatty(self) -> bool:
        return self._out.isatty()

    def fileno(self) -> int:
        return self._out.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._out, "encoding", "utf-8")


def _say_notice(text: str, worker_logs: Path) -> None:
    """The whole notice to the log file, its first sentence (and a worker death's exit type) to the console."""
    logging.getLogger("ray.raylet").warning("%s", text)  # the log file only
    if "will be retried" in text:
        return  # the death it follows was said; the stage line says it recovered
    first = (text.split(". ")[0].strip() or text)[:200]
    if "worker died" in text.lower():
        detail = re.search(r"Worker exit type: (\w+)", text)
        WORKER_DEATHS.append(first)
        first = f"{first} ({detail.group(1)})" if detail else first
    log.warning("ray: %s; full notice in the sweep log, worker logs in %s", first, worker_logs)


@contextlib.contextmanager
def raylet_notices(worker_logs: Path) -> Iterator[None]:
    """Within the block, the raylet's notices to the driver become one console line each.

    Ray prints them (a worker that died: ~900 characters with its lease,
    node, port and a list of possible causes) to ``sys.stdout`` from a driver
    thread. Here ``sys.stdout`` is a filter (:func:`contextlib.redirect_stdout`,
    no Ray internals touched): the whole text goes to the log file, the
    console gets its first sentence and where the worker logs are, and a
    worker death is counted in :data:`WORKER_DEATHS` so :func:`stage` can say
    that a stage completed in spite of it. Everything else printed passes through.
    """
    with contextlib.redirect_stdout(_RayletNotices(sys.stdout, worker_logs)):
        yield


def link_ray_logs(study_dir: Path) -> Path | None:
    """Link ``<study>/logs/ray`` to this Ray session's log folder (worker output)."""
    try:
        import ray

        ctx = ray.get_runtime_context()
        session = Path(ctx.get_temp_dir()) / ctx.get_session_name()
    except Exception:  # noqa: BLE001 - a client connection has no local session dir
        return None
    if not (session / "logs").is_dir():
        return None
    link = study_dir / "logs" / "ray"
    try:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(session / "logs", target_is_directory=True)
    except OSError:
        return None
    return link


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

    A death that Ray recovered from (the stage still completed) is said too.

    The full traceback goes to ``logfile`` only. Errors of the stage's own
    code (and :class:`~dataselect.core.errors.UserError`) pass through unchanged.
    """
    from dataselect.core.errors import StageError, log_traceback

    deaths = len(WORKER_DEATHS)
    try:
        yield
        lost = len(WORKER_DEATHS) - deaths
        if lost:
            log.warning("%s stage completed although %d Ray worker(s) died: Ray re-ran their work; "
                        "worker logs in %s", name, lost, study_dir / "logs" / "ray")
    except Exception as err:
        cause = _system_failure(err)
        if cause is None:
            raise
        log_traceback(f"{name} stage failed")
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:200]
        raise StageError(f"{name} stage: a Ray worker or node died ({type(cause).__name__}: {first}); "
                         f"traceback in {logfile}, worker logs in {study_dir / 'logs' / 'ray'}; "
                         "rerun (cached shards and manifests are kept)") from err


def failed_trials(report: Path) -> list[str]:
    """Trials of ``report``'s ``results.csv`` that did not finish (ERROR or INCOMPLETE)."""
    import csv

    try:
        with (report.parent / "results.csv").open(encoding="utf-8", newline="") as fh:
            return [r["trial"] for r in csv.DictReader(fh) if r.get("status") != "TERMINATED"]
    except (OSError, KeyError):
        return []


def closing_lines(report: Path) -> list[str]:
    """What a finished sweep prints last: the report's conclusion, its largest Δ, where to look.

    Read from ``report/headline.txt`` (written with report.md), so the console
    says what the report says, word for word: the conclusion, the largest
    differences, and every trial left out of the statistics with why.
    """
    head = report.parent / "headline.txt"
    text = head.read_text(encoding="utf-8").strip("\n") if head.is_file() else ""
    study = report.parent.parent
    # A report written from a study archive (reports/<name>/report.md) has no TensorBoard logs.
    board = [f"TensorBoard: tensorboard --logdir {study / 'tensorboard'}"] if report.parent.name == "report" else []
    return [*([text, ""] if text else []), f"report: {report}", *board]
