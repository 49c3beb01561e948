"""A study config as every command loads it: parsed, typed, and its selectors checked.

:func:`dataselect.core.config.parse_config` checks types, ranges and paths;
here the selector specs are checked too (names against the registry,
parameters by building each selector, the feature families they read,
a target where one is needed): the boundary where the layers meet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dataselect.core.config import StudyConfig
from dataselect.core.config_loader import load_config, parse_config
from dataselect.core.errors import ConfigError
from dataselect.selectors.checks import check_selectors

__all__ = ["load_study", "parse_study"]


def parse_study(raw: Any, *, check_paths: bool = True) -> StudyConfig:
    """A raw mapping (from YAML) as a fully checked :class:`StudyConfig`."""
    return _confirmed(parse_config(raw, check_paths=check_paths, checks=(check_selectors,)))


def load_study(path: str | Path, *, check_paths: bool = True) -> StudyConfig:
    """A study YAML (``yaml.safe_load``) as a fully checked :class:`StudyConfig`."""
    return _confirmed(load_config(path, check_paths=check_paths, checks=(check_selectors,)))


def _confirmed(cfg: StudyConfig) -> StudyConfig:
    """A confirmatory study with its screen's chosen arms (:mod:`dataselect.sweep.confirm`),
    checked like the YAML's own selectors."""
    if cfg.confirm is None:
        return cfg
    # pandas and the screen's files: only a confirmatory study needs them
    from dataselect.sweep.confirm import resolve

    resolved = resolve(cfg)
    problems: list[str] = []
    check_selectors(resolved, problems.append)
    if problems:
        raise ConfigError("\n".join(dict.fromkeys(f"confirm.screen: {cfg.confirm.screen}'s arm {p}"
                                                   for p in problems)))
    return resolved
