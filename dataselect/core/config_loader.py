"""Reading a study config: YAML (``safe_load``) to a checked :class:`StudyConfig`.

Every problem, of types, ranges, paths or of a check passed in, becomes one
line of one :class:`~dataselect.core.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dataselect.core.config import ListItemError, StudyConfig
from dataselect.core.errors import ConfigError

__all__ = ["Check", "load_config", "parse_config"]


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<config>"


def _format_error(err: ValidationError) -> str:
    """Every error of a pydantic ValidationError, one ``field: problem`` line each."""
    lines: list[str] = []
    for e in err.errors(include_url=False):
        # One line per problem even when a key or value holds a line break.
        line = _format_one(e).replace("\r", "\\r").replace("\n", "\\n")
        if line not in lines:
            lines.append(line)
    return "\n".join(lines)


def _format_one(e: Any) -> str:
    loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    # Drop pydantic's union/constraint branch names ("int", "constrained-int") from the path.
    loc = tuple(p for p in loc if p not in {"int", "float", "str", "list[float]", "list[str]", "none",
                                            "constrained-int"})
    ctx = e.get("ctx") or {}
    exc = ctx.get("error")
    if isinstance(exc, ListItemError):
        return f"{_loc(loc)}[{exc.index}]: {exc.message}"
    msg = str(exc) if exc is not None else e["msg"]
    if e["type"] == "extra_forbidden":
        return f"{_loc(loc)}: unknown key (check spelling; see the config reference in README.md)"
    if e["type"] == "missing":
        return f"{_loc(loc)}: required field is missing"
    if isinstance(exc, ValueError) and re.match(r"^selectors\[\d+\]", msg):
        return msg
    got = e.get("input")
    got_s = "" if isinstance(got, dict) else f"; got {_short_repr(got)}"
    return f"{_loc(loc)}: {msg}{got_s}"


def _short_repr(value: Any, limit: int = 80) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


Check = Callable[[StudyConfig, Callable[[str], None]], None]
"""A check of a whole config that reports each problem as one line (``report(line)``)."""


def parse_config(raw: Any, *, check_paths: bool = True, checks: Sequence[Check] = ()) -> StudyConfig:
    """Validate a raw mapping (from YAML) into a :class:`StudyConfig`.

    Beyond types and ranges, local paths must exist (``check_paths``) and
    every check of ``checks`` passes; every problem is one line of one
    :class:`ConfigError`. Checks that need the rest of the package (selector
    names and parameters: :func:`dataselect.selectors.checks.check_selectors`)
    are passed in at the boundary (:func:`dataselect.sweep.study.parse_study`),
    so this module imports nothing above it.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"<config>: must be a mapping of sections; got {type(raw).__name__}")
    try:
        cfg = StudyConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from err
    problems: list[str] = []
    for check in (*checks, *((_check_paths,) if check_paths else ())):
        problems += [p for p in _collect(check, cfg) if p not in problems]
    if problems:
        raise ConfigError("\n".join(problems))
    return cfg


def _collect(check: Any, cfg: StudyConfig) -> list[str]:
    """Run one check that reports each problem through ``report``; return all lines."""
    lines: list[str] = []

    def report(message: str) -> None:
        if message not in lines:
            lines.append(message)

    check(cfg, report)
    return lines


def load_config(path: str | Path, *, check_paths: bool = True, checks: Sequence[Check] = ()) -> StudyConfig:
    """Read a study YAML with ``yaml.safe_load`` and validate it (:func:`parse_config`)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config: file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"config: {p} is not valid YAML{where}") from err
    return parse_config(raw, check_paths=check_paths, checks=checks)


def _check_paths(cfg: StudyConfig, report: Any) -> None:
    src = cfg.dataset.source
    local = src.startswith((".", "/", "~")) or Path(src).exists()
    if local and not Path(src).expanduser().exists():
        report(f"dataset.source: path does not exist: {src}")
    out = Path(cfg.output_dir).expanduser()
    if out.exists() and not out.is_dir():
        report(f"output_dir: exists and is not a directory: {out}")
    if cfg.target is not None and cfg.target.path is not None and not Path(cfg.target.path).expanduser().exists():
        report(f"target.path: path does not exist: {cfg.target.path}")
