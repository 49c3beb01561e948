"""Name → selector class registry; ``get_selector`` builds validated instances."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from dataselect.errors import UserError
from dataselect.selectors.base import InvalidParameterError, Selector, check
from dataselect.selectors.stratify import PER_CLASS_MODES, PerClass

__all__ = ["UnknownSelectorError", "available", "get_selector", "register"]

_REGISTRY: dict[str, type[Selector]] = {}


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
    :class:`~dataselect.selectors.stratify.PerClass`.

    Raises
    ------
    UnknownSelectorError
        ``name`` is not registered (message lists the known names).
    InvalidParameterError
        A parameter is unknown or out of range (message names ``Owner.field``).
    """
    if name not in _REGISTRY:
        raise UnknownSelectorError(f"unknown selector {name!r}; known: {available()}")
    cls = _REGISTRY[name]
    per_class = params.pop("per_class", "none")
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise InvalidParameterError(
            f"{cls.__name__} has no parameter(s) {unknown}; valid: {known + ['per_class']}"
        )
    check(cls.__name__, "per_class", per_class, per_class in PER_CLASS_MODES,
          f"one of {list(PER_CLASS_MODES)}")
    selector = cls(**params)
    if per_class == "none":
        return selector
    return PerClass(inner=selector, per_class=per_class)
