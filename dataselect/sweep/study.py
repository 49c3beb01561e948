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
from dataselect.selectors.checks import check_selectors

__all__ = ["load_study", "parse_study"]


def parse_study(raw: Any, *, check_paths: bool = True) -> StudyConfig:
    """A raw mapping (from YAML) as a fully checked :class:`StudyConfig`."""
    return parse_config(raw, check_paths=check_paths, checks=(check_selectors,))


def load_study(path: str | Path, *, check_paths: bool = True) -> StudyConfig:
    """A study YAML (``yaml.safe_load``) as a fully checked :class:`StudyConfig`."""
    return load_config(path, check_paths=check_paths, checks=(check_selectors,))
