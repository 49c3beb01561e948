"""Selector contract: validated parameters in, :class:`Selection` out.

Every selector is a frozen dataclass whose fields are its parameters, checked
once in ``__post_init__``; :meth:`Selector.select` checks the feature table,
the budget and the seed once, then hands clean numpy arrays to the private
``_select``, which trusts them. Selectors are pure: no I/O, no global random
state, no Ray.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import numbers
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from dataselect.core.errors import DataError, FeatureError, InvalidParameterError
from dataselect.core.selection import RAGGED_COLUMNS, TARGET_PREFIX, Selection

__all__ = [
    "RAGGED_COLUMNS",
    "TARGET_PREFIX",
    "FeatureError",
    "InvalidParameterError",
    "Selection",
    "Selector",
    "Wrapping",
    "check",
    "largest_remainder",
    "stream_seed",
    "take_rows",
]

Features = Mapping[str, Any]

STREAMS = ("own", "shared")
"""Random-stream modes of :meth:`Selector.select` (``grid.selector_streams``)."""

SEED_STREAM = frozenset({"random"})
"""Selectors whose generator is ``default_rng(seed)`` in either mode: the baseline
keeps the subsets (and manifests) it always had."""


def stream_seed(name: str, seed: int, streams: str = "shared") -> int | list[int]:
    """The entropy of selector ``name``'s generator at ``seed``: ``default_rng(stream_seed(...))``.

    ``own``: ``[seed, word]`` with ``word`` the first 8 bytes of sha256(name), a
    stream of the selector's own, so two selectors at one seed draw unrelated
    numbers (with one stream, gradient_match's 5 % warm-up slice *was* random's 5 %
    subset at the same seed, and kmeans' seeds were random's first draw); ``random``
    keeps ``seed``. ``shared``: ``seed`` for every selector (the rule before modes existed).
    """
    if streams not in STREAMS:
        raise InvalidParameterError(f"streams must be one of {list(STREAMS)}; got {streams!r}")
    if streams == "shared" or name in SEED_STREAM:
        return int(seed)
    return [int(seed), int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")]


def own_stream(selector: Selector, streams: str) -> bool:
    """Whether ``selector``'s picks under ``streams`` differ from the shared stream's: a seeded
    selector with a stream of its own. Only then does the mode enter its manifest key."""
    return bool(selector.seeded) and stream_seed(selector.name, 0, streams) != 0


def take_rows(features: Mapping[str, Any], rows: np.ndarray) -> dict[str, Any]:
    """The pool rows ``rows`` of every pool column; target columns whole."""
    return {k: v if k.startswith(TARGET_PREFIX) else v[rows] for k, v in features.items()}


def check(owner: str, attr: str, value: Any, ok: bool, expected: str) -> None:
    """Raise :class:`InvalidParameterError` naming ``owner.attr`` unless ``ok``."""
    if not ok:
        raise InvalidParameterError(f"{owner}.{attr} must be {expected}; got {value!r}")


def is_int(value: Any) -> bool:
    """True for Python/numpy integers, False for bool (a common config slip)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_name_list(value: Any) -> bool:
    """A non-empty list (or tuple) of distinct non-empty strings (column names, metrics)."""
    return (isinstance(value, list | tuple) and len(value) > 0
            and all(isinstance(v, str) and v for v in value) and len(set(value)) == len(value))


def is_real(value: Any) -> bool:
    """True for finite real numbers other than bool."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


class Selector:
    """Base class: checks inputs once, then calls ``_select``.

    Subclasses are ``@dataclass(frozen=True)`` with defaults for every field,
    set ``requires`` (feature names) and implement
    ``_select(features, n, budget, rng)``.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    seeded: ClassVar[bool] = True
    """False when the picks never depend on ``seed``: the select stage then
    runs one selection and shares it across the grid's seeds."""
    prefix_consistent: ClassVar[bool] = False
    """True when, for any seed, the selection at budget ``b`` is the first ``b``
    picks and scores of the selection at any larger budget, and its ``info``
    follows from that larger selection (:meth:`truncate`). The select stage
    then runs only a seed's largest budget and slices the smaller ones.
    Declare it only when exact: a budget-dependent allocation, band draw or
    fill breaks it. Subclasses whose answer depends on parameters override
    it with a property, as for ``seeded``."""

    scores_pool: ClassVar[bool] = False
    """True when the selector learns per-row scores from the pool (a warm-up
    head's EL2N, forgetting, margins) that a wrapper splitting the pool must
    compute on the whole pool first: :meth:`prepare`."""

    version: ClassVar[int] = 1
    """Version of this selector's behaviour: bump it with any change that alters
    its picks, scores or info for the same features, parameters and seed. It
    enters the manifest key (:meth:`code_versions`; only when it is not 1, so
    manifests written before versions existed keep their keys), so a bug fix
    recomputes the selections of the old code instead of reusing them."""

    def code_versions(self) -> dict[str, int]:
        """``{class name: version}`` of this selector and every selector it runs
        (``inner`` of a wrapper, members of a composite), those other than 1."""
        out = {type(self).__qualname__: int(self.version)} if self.version != 1 else {}
        for sub in (getattr(self, "inner", None), *getattr(self, "_members", ())):
            if isinstance(sub, Selector):
                out.update(sub.code_versions())
        return dict(sorted(out.items()))

    def required(self) -> tuple[str, ...]:
        """Feature names this instance reads (may depend on parameters)."""
        return tuple(self.requires)

    def params(self) -> dict[str, Any]:
        """Resolved parameters, defaults included, for manifests and cache keys."""
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        out["per_class"] = "none"
        return out

    def prepare(self, features: dict[str, np.ndarray], n: int, budget: int,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Per-row columns computed on the whole pool (``scores_pool`` selectors only).

        :class:`~dataselect.selectors.stratify.PerClass` calls it once, adds the
        columns to the features and slices them per class: a head trained inside
        one class has no other class to tell its rows from. Default: none.
        """
        return {}

    def select(self, features: Features, budget: int, seed: int, *, streams: str = "shared") -> Selection:
        """Choose ``budget`` rows of ``features``.

        Parameters
        ----------
        features : mapping of str to array-like
            Column table (dict of arrays, DataFrame, ...); every name in
            :meth:`required` must be present with ``n`` rows.
        budget : int
            Rows to choose, in ``[1, n]``.
        seed : int
            Seed for ``np.random.default_rng``; same inputs and seed give the
            same indices in any process.
        streams : {"own", "shared"}
            ``own``: the generator is keyed by the selector's name as well
            (:func:`stream_seed`; ``random`` is not); ``shared``: ``default_rng(seed)``.

        Returns
        -------
        Selection
        """
        owner = type(self).__name__
        arrays, n = load_features(owner, features, self.required())
        check(owner, "budget", budget, is_int(budget) and 0 < budget <= n, f"an int in [1, {n}]")
        check(owner, "seed", seed, is_int(seed) and seed >= 0, "a non-negative int")
        check(owner, "streams", streams, streams in STREAMS, f"one of {list(STREAMS)}")
        rng = np.random.default_rng(stream_seed(self.name, int(seed), streams))
        return self._select(arrays, n, int(budget), rng)

    def _select(
        self, features: dict[str, np.ndarray], n: int, budget: int, rng: np.random.Generator
    ) -> Selection:
        """Choose ``budget`` of ``n`` rows; inputs are already checked."""
        raise NotImplementedError

    def truncate(self, selection: Selection, budget: int) -> Selection:
        """What :meth:`select` returns at ``budget``, cut from ``selection`` at a larger budget.

        Same features and seed are assumed: ``selection`` must come from this
        selector's own :meth:`select`. Only for ``prefix_consistent``
        selectors; equal to a separate :meth:`select` call bit for bit.

        Raises
        ------
        TypeError
            The selector is not prefix-consistent (slicing would be wrong).
        InvalidParameterError
            ``budget`` is not in ``[1, len(selection.indices)]``, or is one
            the selector itself rejects.
        """
        owner = type(self).__name__
        if not self.prefix_consistent:
            raise TypeError(f"{owner} is not prefix-consistent; run select() at budget {budget}")
        size = len(selection.indices)
        check(owner, "budget", budget, is_int(budget) and 0 < budget <= size,
              f"an int in [1, {size}] (the budget of the selection to cut)")
        budget = int(budget)
        if budget == size:
            return selection
        scores = None if selection.scores is None else selection.scores[:budget]
        return Selection(selection.indices[:budget], scores, self._prefix_info(selection, budget))

    def _prefix_info(self, selection: Selection, budget: int) -> dict[str, Any]:
        """``info`` at ``budget < len(selection.indices)``; default: it does not depend on the budget."""
        return dict(selection.info)


def _plain(value: Any) -> Any:
    """Tuples to lists so params compare equal to their JSON round-trip."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def load_features(
    owner: str, features: Features, names: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], int]:
    """Pull ``names`` out of ``features`` as checked numpy arrays.

    ``embedding``-like 2-D columns must be (n, d) with d >= 1; ``label`` may
    hold any sortable values; every other column must be 1-D numeric. Every
    float column must be finite. Returns the arrays and ``n``.
    """
    missing = [k for k in names if not _has(features, k)]
    if missing:
        raise FeatureError(
            f"{owner} needs features {missing}; the table has {sorted(map(str, _keys(features)))}"
        )
    out: dict[str, np.ndarray] = {}
    sizes: dict[bool, tuple[int, str]] = {}  # is-target -> (rows, first column)
    for name in names:
        arr = _column(owner, name, features[name])
        side = name.startswith(TARGET_PREFIX)
        rows, first = sizes.setdefault(side, (len(arr), name))
        if len(arr) != rows:
            raise DataError(
                f"{owner}: features[{name!r}] has {len(arr)} rows but features[{first!r}] has {rows}"
            )
        out[name] = arr
    if True in sizes and sizes[True][0] == 0:
        raise DataError(f"{owner}: the target has no rows")
    if False in sizes:
        n = sizes[False][0]
    else:  # no pool column required: size the table from any pool column
        keys = [k for k in _keys(features) if not str(k).startswith(TARGET_PREFIX)]
        if not keys:
            raise FeatureError(f"{owner} got an empty feature table")
        key = "label" if "label" in keys else keys[0]
        n = len(features[key])
    if n == 0:
        raise DataError(f"{owner}: the feature table has no rows")
    return out, n


def _has(features: Features, name: str) -> bool:
    try:
        return name in features
    except TypeError:
        return False


def _keys(features: Features) -> list[Any]:
    keys = getattr(features, "keys", None)
    if callable(keys):
        return list(keys())
    return list(getattr(features, "column_names", []))


def _column(owner: str, name: str, col: Any) -> np.ndarray:
    if name.removeprefix(TARGET_PREFIX) in RAGGED_COLUMNS:
        return _ragged(owner, name, col)
    arr = np.asarray(col)
    if arr.dtype == object and arr.ndim == 1 and len(arr) and isinstance(arr[0], np.ndarray | list):
        # DataFrame / Arrow list column: one vector per row.
        try:
            arr = np.stack([np.asarray(v) for v in arr])
        except ValueError as exc:
            raise DataError(f"{owner}: features[{name!r}] rows have different lengths") from exc
    if name.removeprefix(TARGET_PREFIX) == "label":
        if arr.ndim != 1:
            raise DataError(f"{owner}: features[{name!r}] must be 1-D; got shape {arr.shape}")
        if arr.dtype.kind == "f":
            _check_finite(owner, name, arr)
        return arr
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{owner}: features[{name!r}] must be numeric; got dtype {arr.dtype}")
    if arr.ndim == 2:
        if arr.shape[1] == 0:
            raise DataError(
                f"{owner}: features[{name!r}] must be (n, d) with d >= 1; got shape {arr.shape}"
            )
    elif arr.ndim != 1:
        raise DataError(f"{owner}: features[{name!r}] must be 1-D or (n, d); got shape {arr.shape}")
    if name.removeprefix(TARGET_PREFIX) == "embedding" and arr.ndim != 2:
        raise DataError(f"{owner}: features[{name!r}] must be (n, d); got shape {arr.shape}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    _check_finite(owner, name, arr)
    return arr


def _ragged(owner: str, name: str, col: Any) -> np.ndarray:
    """An object array (n,) of int64 vectors, one per row, lengths free."""
    rows = list(col)
    out = np.empty(len(rows), dtype=object)
    for i, v in enumerate(rows):
        a = np.asarray(v)
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise DataError(f"{owner}: features[{name!r}] row {i} must be a 1-D integer vector; "
                            f"got shape {a.shape}, dtype {a.dtype}")
        out[i] = a.astype(np.int64, copy=False)
    return out


def _check_finite(owner: str, name: str, arr: np.ndarray) -> None:
    ok = np.isfinite(arr)
    if arr.ndim == 2:
        ok = ok.all(axis=1)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        raise DataError(
            f"{owner}: features[{name!r}] has NaN/inf in {bad.size} row(s), first at row {bad[0]}"
        )


def largest_remainder(sizes: np.ndarray, budget: int) -> np.ndarray:
    """Split ``budget`` in proportion to ``sizes`` (Hamilton's method).

    Each share is ``floor(budget * s / n)``; the rows left over go one each
    to the largest fractional parts, ties to the lower index. Shares sum to
    ``budget`` exactly and never exceed ``sizes`` when ``budget <= sum(sizes)``.
    Integer arithmetic, so the split is exact and platform-independent.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    scaled = sizes * int(budget)  # budget * s fits int64 for any realistic table
    shares = scaled // total
    rem = scaled - shares * total
    left = int(budget) - int(shares.sum())
    order = np.lexsort((np.arange(len(sizes)), -rem))
    shares[order[:left]] += 1
    return shares


class Wrapping:
    """Mixin of a selector that runs ``self.inner`` on parts of the pool (per
    class, per partition): it answers to the inner selector's name and
    seeding, reads one column more, and refuses an ``initial`` set of global
    row indices, which no part could honour."""

    inner: Selector

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def seeded(self) -> bool:
        return self.inner.seeded

    def _required_with(self, column: str) -> tuple[str, ...]:
        inner = self.inner.required()
        return inner + (() if column in inner else (column,))

    @staticmethod
    def _refuse_initial(owner: str, inner: Selector, setting: str) -> None:
        if getattr(inner, "initial", None):
            raise InvalidParameterError(
                f"{owner}.initial holds global row indices and cannot be combined with "
                f"{setting}; got {inner.initial!r}"  # type: ignore[attr-defined]
            )
