"""Name → selector class registry; ``get_selector`` builds validated instances."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

from dataselect.core.errors import UnknownSelectorError
from dataselect.selectors.base import InvalidParameterError, Selector, check, is_int
from dataselect.selectors.stratify import PER_CLASS_MODES, PerClass

__all__ = ["UnknownSelectorError", "available", "get_selector", "register"]

_REGISTRY: dict[str, type[Selector]] = {}

PARTITION_PARAMS = ("partitions", "partition_sample", "partition_niter")
"""Accepted by the :data:`~dataselect.selectors.partitioned.PARTITIONABLE` selectors."""

_PARTITIONING: list[tuple[Callable[..., Selector], tuple[str, ...]]] = []
"""(wrapper, selector names it takes), set by :mod:`dataselect.selectors.partitioned`
when the package is imported: the registry imports nothing that imports it."""


def register_partitioning(wrapper: Callable[..., Selector], names: tuple[str, ...]) -> None:
    """Let ``partitions`` wrap the selectors ``names`` in ``wrapper(inner=..., **partitioning)``."""
    _PARTITIONING[:] = [(wrapper, tuple(names))]


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
    :class:`~dataselect.selectors.stratify.PerClass`; its default is the
    class's ``default_per_class`` (``"none"`` but for a recipe that is
    class-balanced, ``d2``). ``partitions`` (``"auto"``
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
    wrapper, partitionable = _PARTITIONING[0] if _PARTITIONING else (None, ())
    if name not in _REGISTRY:
        raise UnknownSelectorError(f"unknown selector {name!r}; known: {available()}")
    cls = _REGISTRY[name]
    for old, new in getattr(cls, "renamed", {}).items():
        if old in params:
            warnings.warn(f"{cls.__name__}.{old} is now called {new}; {old} still works for now",
                          DeprecationWarning, stacklevel=2)
            check(cls.__name__, old, params[old], new not in params, f"given alone (not with {new})")
            params[new] = params.pop(old)
    per_class = params.pop("per_class", getattr(cls, "default_per_class", "none"))
    partitioning = {k: params.pop(k) for k in PARTITION_PARAMS if k in params}
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise InvalidParameterError(
            f"{cls.__name__} has no parameter(s) {unknown}; valid: "
            f"{known + ['per_class'] + (list(PARTITION_PARAMS) if name in partitionable else [])}"
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
    if wrapper is None:
        raise InvalidParameterError(f"{cls.__name__}.partitions: partitioned selection is not loaded "
                                    "(import dataselect.selectors)")
    return wrapper(inner=selector, **partitioning)
