"""User-facing errors: one line, names the field, no traceback.

Everything a researcher can get wrong (config, data, model references,
cache state) raises a subclass of :class:`UserError`; the CLI prints
``error: <message>`` and exits with code 2. Bugs stay ordinary exceptions.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """A study config field is missing, mistyped or out of range."""


class DataError(UserError, ValueError):
    """A dataset file or column does not hold what the config says."""


class ModelError(UserError, OSError):
    """A model reference cannot be resolved or loaded (offline, missing, wrong kind)."""


class CacheError(UserError, OSError):
    """A cached artifact (feature shard, manifest) is unreadable."""


class StageError(UserError):
    """A stage failed for a reason outside the user's input (a Ray worker or node died):
    one line naming the stage and where the logs are, exit code 1."""

    exit_code = 1


def error_lines(err: BaseException) -> list[str]:
    """``error: …`` lines for a :class:`UserError` (one per problem it lists)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return [f"error: {ln}" for ln in lines] or [f"error: {type(err).__name__}"]
