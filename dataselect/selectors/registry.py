"""Name → selector class registry; ``get_selector`` builds validated instances."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

from dataselect.errors import UserError
from dataselect.selectors.base import InvalidParameterError, Selector, check, is_int
from dataselect.selectors.stratify import PER_CLASS_MODES, PerClass

__all__ = ["UnknownSelectorError", "available", "get_selector", "register"]

_REGISTRY: dict[str, type[Selector]] = {}

PARTITION_PARAMS = ("partitions", "partition_sample", "partition_niter")
"""Accepted by the :data:`~dataselect.selectors.partitioned.PARTITIONABLE` selectors."""


class UnknownSelectorError(UserError, KeyError):
    """No selector is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def register(name: str) -> Callable[[type[Selector]], type[Selector]]:
    """Class decorator: file ``cls`` under ``name`` and set ``cls.name``."""

    def add(cls: type[Selector]) -> type[Selector]:
        if name in _REGISTRY:
            raise ValueError(f"selector {name!r} is already registered")
        cls.name, _REGISTRY[name] = name, cls
        return cls

    return add


def available() -> list[str]:
    """Registered selector names, sorted."""
    return sorted(_REGISTRY)


def get_selector(name: str, **params: Any) -> Selector:
    """Build the selector registered as ``name`` with validated ``params``.

    ``per_class`` (``"none"``, ``"proportional"``, ``"balanced"``) is accepted
    by every selector: anything but ``"none"`` wraps the selector in
    :class:`~dataselect.selectors.stratify.PerClass`. ``partitions`` (``"auto"``
    or an int; absent or 1: off), with ``partition_sample`` and
    ``partition_niter``, wraps a diversity selector (and its ``PerClass``) in
    :class:`~dataselect.selectors.partitioned.Partitioned`.

    Raises
    ------
    UnknownSelectorError
        ``name`` is not registered (message lists the known names).
    InvalidParameterError
        A parameter is unknown or out of range (message names ``Owner.field``).
    """
    # partitioned.py imports selector modules, which import this one: import late.
    from dataselect.selectors.partitioned import PARTITIONABLE, Partitioned

    if name not in _REGISTRY:
        raise UnknownSelectorError(f"unknown selector {name!r}; known: {available()}")
    cls = _REGISTRY[name]
    per_class = params.pop("per_class", "none")
    partitioning = {k: params.pop(k) for k in PARTITION_PARAMS if k in params}
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise InvalidParameterError(
            f"{cls.__name__} has no parameter(s) {unknown}; valid: "
            f"{known + ['per_class'] + (list(PARTITION_PARAMS) if name in PARTITIONABLE else [])}"
        )
    check(cls.__name__, "per_class", per_class, per_class in PER_CLASS_MODES,
          f"one of {list(PER_CLASS_MODES)}")
    selector = cls(**params)
    if per_class != "none":
        selector = PerClass(inner=selector, per_class=per_class)
    parts = partitioning.get("partitions")
    if parts is None or (is_int(parts) and parts == 1):
        if extra := sorted(set(partitioning) - {"partitions"}):
            warnings.warn(f"{cls.__name__}: {extra} ignored without partitions >= 2 or 'auto'",
                          stacklevel=2)
        return selector
    return Partitioned(inner=selector, **partitioning)
