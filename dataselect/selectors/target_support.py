"""How well a target-aware selection is supported by its target, and what drives it.

A user with a few hundred target rows needs a selector that says how sure
it is and never quietly picks by length or by one class. These pure
functions compute, from what a selector already holds, the numbers a
selection's ``info`` carries and the warnings (one sentence each, with the
reason) that the select stage's console lines and the report repeat:

* :func:`ngram_support`: the share of pool n-gram occurrences whose bucket
  the target never shows. A bag model fitted on the target knows nothing
  about those; under the authors' DSIR smoothing (1e-8) each of them adds
  about ``log(1e-8 / p_pool)`` to a row's summed weight, so a long row loses
  to a short one whatever its n-grams are.
* :func:`effective_sample_size`: Kish's ``(Σw)² / Σw²`` of the importance
  weights, small when a few rows carry the mass.
* :func:`length_drive`: the kept rows' mean length against the pool's and
  the target's; a warning when the selection moved *away* from the target's
  length (SST-2: target 19 words, pool 9.4, paper-default DSIR kept 5).
* :func:`class_drive`: the kept rows' class shares against the pool's; a
  warning when one class took far more than its share.

Thresholds are module constants, so tests and reports quote the same rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CLASS_EXCESS", "LENGTH_AWAY", "WARNINGS_KEY", "class_drive", "collect_warnings",
           "effective_sample_size", "length_drive", "length_drive_prefix", "ngram_support"]

WARNINGS_KEY = "warnings"
"""``info`` key of a selection's warnings: a list of sentences (empty: none)."""

LENGTH_AWAY = 1.25
"""A selection is driven by length when its kept rows' mean length is more than this
factor further from the target's than the pool's is (ratios of means, either side)."""

CLASS_EXCESS = 0.15
"""A selection is driven by one class when a class's share of the kept rows exceeds
its pool share by more than this (absolute), with no labelled target to justify it."""


def ngram_support(pool: np.ndarray, target: np.ndarray) -> dict[str, float | None]:
    """``target_unseen_share``: share of pool n-gram occurrences in buckets the target lacks.

    ``pool`` and ``target`` are ragged bucket columns (object arrays of int vectors).
    """
    flat_p = np.concatenate(list(pool)) if len(pool) else np.zeros(0, np.int64)
    flat_t = np.concatenate(list(target)) if len(target) else np.zeros(0, np.int64)
    if not flat_p.size:
        return {"target_unseen_share": None}
    seen = np.zeros(int(max(flat_p.max(), flat_t.max() if flat_t.size else 0)) + 1, dtype=bool)
    seen[flat_t] = True
    return {"target_unseen_share": float(1.0 - seen[flat_p].mean())}


def effective_sample_size(log_weights: np.ndarray) -> float:
    """Kish's effective sample size of ``exp(log_weights)`` over the finite entries."""
    lw = np.asarray(log_weights, np.float64)
    lw = lw[np.isfinite(lw)]
    if not lw.size:
        return 0.0
    w = np.exp(lw - lw.max())
    return float(w.sum() ** 2 / (w ** 2).sum())


def length_drive(pool_lengths: np.ndarray, target_lengths: np.ndarray, picks: np.ndarray,
                 unit: str = "n-grams") -> tuple[dict[str, Any], list[str]]:
    """Mean length of pool, target and kept rows; a warning when the picks moved away from the target.

    The info also holds each pick's length in pick order (``<unit>_each_kept``),
    so a prefix-consistent selector's cut (:func:`length_drive_prefix`) gives
    the info a separate run at the smaller budget gives.
    """
    pool_m = float(np.mean(pool_lengths)) if len(pool_lengths) else float("nan")
    target_m = float(np.mean(target_lengths)) if len(target_lengths) else float("nan")
    each = np.asarray(pool_lengths)[picks]
    u = unit.replace("-", "")
    info = {f"mean_{u}_pool": pool_m, f"mean_{u}_target": target_m, f"{u}_each_kept": [int(x) for x in each]}
    return _kept_length(info, unit)


def length_drive_prefix(info: dict[str, Any], budget: int, unit: str = "n-grams") -> tuple[dict[str, Any], list[str]]:
    """:func:`length_drive`'s info and warnings for the first ``budget`` picks of a selection."""
    u = unit.replace("-", "")
    return _kept_length({**info, f"{u}_each_kept": list(info[f"{u}_each_kept"])[:budget]}, unit)


def _kept_length(info: dict[str, Any], unit: str) -> tuple[dict[str, Any], list[str]]:
    """Lengths are compared as ratios of means (``|log(kept / target)|`` against
    ``|log(pool / target)| + log(LENGTH_AWAY)``): a subset that is shorter than
    the pool while the target is longer (or the reverse) is picking by length,
    not by the target."""
    u = unit.replace("-", "")
    each = info[f"{u}_each_kept"]
    pool_m, target_m = info[f"mean_{u}_pool"], info[f"mean_{u}_target"]
    kept_m = float(np.mean(each)) if len(each) else float("nan")
    info = {**info, f"mean_{u}_kept": kept_m}
    warnings: list[str] = []
    if min(pool_m, target_m, kept_m) > 0:
        away, base = abs(np.log(kept_m / target_m)), abs(np.log(pool_m / target_m))
        if away > base + np.log(LENGTH_AWAY):
            way = "shorter" if kept_m < target_m else "longer"
            warnings.append(
                f"driven by length: the kept rows average {kept_m:.1f} {unit}, the target {target_m:.1f} and "
                f"the pool {pool_m:.1f}, so the selection moved away from the target's length (kept rows "
                f"{way}); its target model is too sparse for this target (see target_unseen_share)")
    return info, warnings


def class_drive(labels: np.ndarray, picks: np.ndarray) -> tuple[dict[str, Any], list[str]]:
    """Kept class shares; a warning when one class exceeds its pool share by :data:`CLASS_EXCESS`."""
    classes, idx = np.unique(np.asarray(labels), return_inverse=True)
    pool_share = np.bincount(idx, minlength=len(classes)) / max(len(idx), 1)
    kept_share = np.bincount(idx[picks], minlength=len(classes)) / max(len(picks), 1)
    info = {"kept_class_share": {_key(c): float(s) for c, s in zip(classes, kept_share, strict=True)}}
    warnings = []
    worst = int(np.argmax(kept_share - pool_share))
    if kept_share[worst] - pool_share[worst] > CLASS_EXCESS:
        warnings.append(
            f"driven by one class: class {_key(classes[worst])} holds {kept_share[worst]:.0%} of the kept rows "
            f"and {pool_share[worst]:.0%} of the pool; per_class: proportional (or balanced) keeps the "
            "pool's class shares")
    return info, warnings


def collect_warnings(info: Any) -> list[str]:
    """Every warning in ``info``, nested ones too (a per-class run holds one info per class)."""
    out: list[str] = []
    if isinstance(info, dict):
        for k, v in info.items():
            if k == WARNINGS_KEY and isinstance(v, list):
                out += [str(w) for w in v if str(w) not in out]
            else:
                out += [w for w in collect_warnings(v) if w not in out]
    return out


def _key(label: Any) -> str:
    return str(label.item() if isinstance(label, np.generic) else label)
