"""What ``pipeline`` and ``fusion`` share: members built from YAML entries, and derived from them.

Both are configured in YAML as lists of ``{name, params, ...}`` entries and
build their members with :func:`~dataselect.selectors.registry.get_selector`
in ``__post_init__``, so an unknown name or a bad nested parameter fails at
config load with the entry's position in the message. ``required()`` is the
union of the members', ``seeded`` is true when any member is, and
``params()`` reports every member's resolved parameters (defaults included)
so cache keys change when a member's default does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dataselect.core.errors import UserError
from dataselect.selectors.base import (
    InvalidParameterError,
    Selector,
    check,
)
from dataselect.selectors.registry import get_selector

__all__ = ["Composite", "build_members"]


def build_members(owner: str, field: str, entries: Any, extra: dict[str, Any]) -> tuple[
        tuple[dict[str, Any], ...], tuple[Selector, ...]]:
    """Check ``entries`` and build each member; ``extra`` maps allowed keys to defaults."""
    check(owner, field, entries, isinstance(entries, list | tuple) and len(entries) > 0,
          "a non-empty list of {name, params, ...} entries")
    specs, members = [], []
    allowed = ["name", "params", *extra]
    for i, entry in enumerate(entries):
        where = f"{field}[{i}]"
        check(owner, where, entry, isinstance(entry, Mapping), "a mapping with a 'name'")
        unknown = sorted(set(entry) - set(allowed))
        check(owner, where, entry, not unknown, f"free of unknown keys {unknown}; valid: {allowed}")
        name, params = entry.get("name"), entry.get("params") or {}
        check(owner, f"{where}.name", name, isinstance(name, str) and name != "", "a selector name")
        check(owner, f"{where}.params", params, isinstance(params, Mapping), "a mapping")
        try:
            member = get_selector(name, **dict(params))
        except UserError as err:  # unknown name is a KeyError: fold both into one kind
            raise InvalidParameterError(f"{owner}.{where}: {err}") from err
        members.append(member)
        specs.append({"name": name, "params": member.params(),
                      **{k: entry.get(k, default) for k, default in extra.items()}})
    return tuple(specs), tuple(members)


class Composite(Selector):
    """What a composition of selectors derives from its members (set in
    ``_members`` by ``__post_init__``): it is seeded when any member is, and
    reads the union of their features."""

    @property
    def seeded(self) -> bool:  # type: ignore[override]
        return any(m.seeded for m in self._members)  # type: ignore[attr-defined]

    def required(self) -> tuple[str, ...]:
        cols = (c for m in self._members for c in m.required())  # type: ignore[attr-defined]
        return tuple(dict.fromkeys(cols))

