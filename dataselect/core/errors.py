"""User-facing errors: one line, names the field, no traceback.

Everything a researcher can get wrong (config, data, model references,
cache state) raises a subclass of :class:`UserError`; the CLI prints
``error: <message>`` and exits with code 2. Bugs stay ordinary exceptions.

Exit codes: 0 done; 1 a stage, the report or our code failed
(:class:`StageError`); 2 bad input; 3 the sweep finished with failed
trials (:class:`TrialsFailedError`).
"""

from __future__ import annotations

import logging
import traceback


class UserError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """A study config field is missing, mistyped or out of range."""


class DataError(UserError, ValueError):
    """A dataset file or column does not hold what the config says."""


class ModelError(UserError, OSError):
    """A model reference cannot be resolved or loaded (offline, missing, wrong kind)."""


class InsufficientRowsError(DataError):
    """A filter keeps fewer rows than the budget asks for (a band, a threshold, a stage)."""


class InsufficientStageError(DataError):
    """A pipeline stage would keep fewer rows than the budget (or more than it got)."""


class InvalidParameterError(UserError, ValueError):
    """A selector parameter (or budget / seed) is out of its allowed set."""


class FeatureError(UserError, KeyError):
    """A feature a selector needs is missing from the table."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class UnknownSelectorError(UserError, KeyError):
    """No selector is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class CacheError(UserError, OSError):
    """A cached artifact (feature shard, manifest) is unreadable."""


class StageError(UserError):
    """A stage failed for a reason outside the user's input (a Ray worker or node died):
    one line naming the stage and where the logs are, exit code 1."""

    exit_code = 1


class ReportError(StageError):
    """The trials finished but the report could not be written; every result is kept."""


class TrialsFailedError(UserError):
    """The sweep ran and wrote its report, but some trials failed: exit code 3, so a script
    or CI job sees it (2 is bad input, 1 a stage or report that failed)."""

    exit_code = 3


TRACEBACK_LOGGER = "traceback"
"""Logger of tracebacks for the study's log file: it does not propagate, so only a
log file attached to it (:func:`dataselect.sweep.console.log_file`) receives them."""
logging.getLogger(TRACEBACK_LOGGER).propagate = False


def log_traceback(what: str, text: str | None = None) -> None:
    """Write ``what`` and a traceback to the log file only (never the console).

    Call inside an ``except`` block (the current exception, its ``__cause__``
    chain included), or pass ``text``, a traceback formatted elsewhere (a Ray
    task's). The console gets the one readable line the caller raises or logs.
    """
    logger = logging.getLogger(TRACEBACK_LOGGER)
    if text is not None:
        logger.info("%s\n%s", what, text.rstrip())
    else:
        logger.info("%s", what, exc_info=True)


def first_line(err: BaseException) -> str:
    """``Type: first line of the message``, for one console line about ``err``."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def format_exception(err: BaseException) -> str:
    """The full traceback of ``err`` (with its cause chain) as text."""
    return "".join(traceback.format_exception(type(err), err, err.__traceback__))


def error_lines(err: BaseException) -> list[str]:
    """``error: …`` lines for a :class:`UserError` (one per problem it lists)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return [f"error: {ln}" for ln in lines] or [f"error: {type(err).__name__}"]
