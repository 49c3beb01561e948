"""A confirmatory study's arms: read from its screen, chosen by the stated rule, pre-registered.

``confirm: {screen, rule, k, metric}`` (:class:`~dataselect.core.config.ConfirmConfig`)
names a finished screening study. At load (:func:`resolve`, called by
:func:`dataselect.sweep.study.load_study`) the screen's report is read, the
rule (:func:`dataselect.report.confirm.choose`) picks ``k`` arms per fraction,
and the config's ``selectors`` (only ``random`` in the YAML) gain those arms,
each with the ``fractions`` it was chosen at, so every command (``plan``,
``select``, ``sweep``) sees the same grid and each fraction's Holm family is
its ``k`` arms. The screen's seeds must be disjoint from the study's: a
screening trial then cannot be one of the confirmatory trials, nor be adopted
as one (a trial key holds its seed).

Before Ray starts, :func:`preregister` writes ``preregistration.json`` into the
study folder: the rule, ``k``, the screen's name, path, seeds and the sha256 of
the summary the rule read, and the arms per fraction with their screen Δ. A
later run (``--resume`` or not) whose resolution differs from it stops: a
pre-registration does not change once trials may have trained under it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dataselect.core.atomic import atomic_write_text
from dataselect.core.config import ConfirmConfig, SelectorSpec, StudyConfig
from dataselect.core.errors import ConfigError
from dataselect.report.confirm import choose

__all__ = ["PREREG_FILE", "Design", "Screen", "design", "plan_lines", "preregister", "preregistration", "read_preregistration",
           "read_screen", "resolve"]

PREREG_FILE = "preregistration.json"
PREREG_VERSION = 1
_BASELINE = "random"


@dataclass(frozen=True)
class Screen:
    """What a confirmatory study reads of its screen (see :func:`read_screen`)."""

    path: str
    """As ``confirm.screen`` gives it (a relative path stays relative: a clone elsewhere matches)."""
    name: str
    report: Path
    """The folder holding its ``summary.csv`` (``<study>/report`` or the archive itself)."""
    basis: str
    """``validation`` (the rule read ``validation_summary.csv``) or ``eval`` (``summary.csv``)."""
    summary_file: Path
    sha256: str
    summary: pd.DataFrame
    """The file the rule ranks on."""
    eval_summary: pd.DataFrame
    """Its eval-row summary (``summary.csv``): the seed and row variances ``plan`` sizes seeds from."""
    specs: dict[str, dict[str, Any]]
    """Selector label -> ``{"name", "params"}`` of its arms."""
    seeds: list[int]
    trainer: dict[str, Any]
    """``mode`` and ``model`` of its trials, as far as it records them."""
    n_eval: int | None


def read_screen(confirm: ConfirmConfig) -> Screen:
    """The screen ``confirm.screen`` names, read from its report files; a missing or unreadable
    one is a :class:`ConfigError` naming ``confirm.screen`` and the file."""
    root = Path(confirm.screen).expanduser()
    report = root / "report" if (root / "report" / "summary.csv").is_file() else root
    eval_file = report / "summary.csv"
    if not eval_file.is_file():
        raise ConfigError(f"confirm.screen: {confirm.screen} holds no finished report ({root}/report/summary.csv "
                          f"or {root}/summary.csv): name a screening study's folder or its archive")
    meta: dict[str, Any] = {}
    for cand in (root / "study.json", report / "study.json"):
        if cand.is_file():
            meta = _json(cand)
            break
    val_file = report / "validation_summary.csv"
    eval_summary = _csv(eval_file)
    basis_file = eval_file
    if val_file.is_file() and (v := _csv(val_file)) is not None and (v["metric"] == confirm.metric).any():
        basis_file, summary, basis = val_file, v, "validation"
    else:
        summary, basis = eval_summary, "eval"
    results = _csv(report / "results.csv") if (report / "results.csv").is_file() else pd.DataFrame()
    cfg = meta.get("config") or {}
    specs: dict[str, dict[str, Any]] = {}
    for s in cfg.get("selectors") or []:
        specs[s.get("label") or s["name"]] = {"name": s["name"], "params": dict(s.get("params") or {})}
    if not specs and {"selector", "name", "params"} <= set(results.columns):
        # A committed report without its study.json: the results name each arm's selector and params.
        for r in results.drop_duplicates("selector").to_dict("records"):
            specs[str(r["selector"])] = {"name": str(r["name"]), "params": _params(r["params"], eval_file)}
    seeds = {int(s) for s in (cfg.get("grid") or {}).get("seeds") or []}
    if "seed" in results:
        seeds |= {int(s) for s in results["seed"].dropna()}
    if not seeds:
        raise ConfigError(f"confirm.screen: cannot tell the seeds of {confirm.screen} (no study.json, no "
                          "results.csv): a confirmatory study must prove its seeds are fresh")
    tr = cfg.get("trainer") or {}
    trainer = {"mode": tr.get("mode"), "model": tr.get("model")}
    if trainer["mode"] is None and {"mode", "model"} <= set(results.columns) and len(results):
        trainer = {"mode": str(results["mode"].iloc[0]), "model": str(results["model"].iloc[0])}
    n_eval = (meta.get("dataset") or {}).get("n_eval")
    return Screen(path=confirm.screen, name=str(meta.get("name") or root.resolve().name), report=report,
                  basis=basis, summary_file=basis_file,
                  sha256=hashlib.sha256(basis_file.read_bytes()).hexdigest(), summary=summary,
                  eval_summary=eval_summary, specs=specs, seeds=sorted(seeds), trainer=trainer,
                  n_eval=int(n_eval) if n_eval else None)


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"confirm.screen: cannot read {path}: {err}") from err


def _csv(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"confirm.screen: cannot read {path}: {err}") from err
    need = {"metric", "selector", "fraction", "delta", "ci_low", "ci_high"}
    if path.name.endswith("summary.csv") and not need <= set(df.columns):
        raise ConfigError(f"confirm.screen: {path} lacks columns {sorted(need - set(df.columns))}")
    return df


def _params(text: Any, where: Path) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) and text else {}
    except ValueError as err:
        raise ConfigError(f"confirm.screen: unreadable selector params {text!r} in {where.parent / 'results.csv'}"
                          ) from err
    return dict(value) if isinstance(value, dict) else {}


def _chosen(cfg: StudyConfig, screen: Screen) -> dict[float, pd.DataFrame]:
    """The rule's arms per fraction, every problem of the design one line of one ConfigError."""
    c = cfg.confirm
    if c is None:
        raise ValueError("_chosen needs a confirmatory study")
    problems = []
    overlap = sorted(set(cfg.grid.seeds) & set(screen.seeds))
    if overlap:
        problems.append(f"grid.seeds: {list(cfg.grid.seeds)} share {overlap} with the seeds of screen "
                        f"{screen.name!r} ({screen.path}): {screen.seeds}; a confirmatory study trains on "
                        "fresh seeds only")
    have = sorted({float(f) for f in screen.summary.loc[screen.summary["metric"] == c.metric, "fraction"]})
    missing = [f for f in cfg.grid.fractions if not any(abs(f - h) < 1e-12 for h in have)]
    if missing:
        problems.append(f"grid.fractions: {missing} not in screen {screen.name!r} ({screen.path}), which has "
                        f"{have or 'no results'} for {c.metric}")
    chosen = choose(screen.summary, c.rule, c.k, c.metric, [f for f in cfg.grid.fractions if f not in missing])
    for f, g in chosen.items():
        if not missing and g.empty:
            problems.append(f"confirm.rule: screen {screen.name!r} has no arm with a {c.rule} value at "
                            f"fraction {f:g} (fewer than 2 seed pairs)")
        for label in g["selector"]:
            if label not in screen.specs:
                problems.append(f"confirm.screen: arm {label!r} of {screen.summary_file} has no selector spec "
                                "in the screen's study.json or results.csv")
    if problems:
        raise ConfigError("\n".join(dict.fromkeys(problems)))
    return chosen


def resolve(cfg: StudyConfig) -> StudyConfig:
    """``cfg`` with its screen's chosen arms added to ``selectors`` (each at the fractions it was
    chosen at); ``cfg`` itself when it has no ``confirm``. Errors: one :class:`ConfigError`."""
    if cfg.confirm is None:
        return cfg
    names = [s.key for s in cfg.selectors]
    if names != [_BASELINE] or cfg.selectors[0].name != _BASELINE or cfg.selectors[0].params:
        raise ConfigError(f"selectors: a confirmatory study (confirm) lists only its baseline, "
                          f"[{{name: {_BASELINE}}}]; its arms come from the screen by the rule; got {names}")
    screen = read_screen(cfg.confirm)
    return cfg.model_copy(update={"selectors": [*cfg.selectors, *_arms(cfg, screen, _chosen(cfg, screen))]})


def _arms(cfg: StudyConfig, screen: Screen, chosen: dict[float, pd.DataFrame]) -> list[SelectorSpec]:
    """The chosen arms as selector specs, in order of first choice, each at the fractions it was chosen at."""
    at: dict[str, list[float]] = {}
    for f, g in chosen.items():
        for label in g["selector"]:
            at.setdefault(label, []).append(f)
    return [SelectorSpec(name=screen.specs[label]["name"], params=screen.specs[label]["params"],
                         label=None if label == screen.specs[label]["name"] else label,
                         fractions=None if sorted(fs) == sorted(cfg.grid.fractions) else fs)
            for label, fs in at.items()]


def preregistration(cfg: StudyConfig) -> dict[str, Any] | None:
    """The pre-registration of ``cfg`` as :func:`preregister` writes it (None: not a confirm study)."""
    if cfg.confirm is None:
        return None
    c = cfg.confirm
    screen = read_screen(c)
    chosen = _chosen(cfg, screen)
    if list(cfg.selectors[1:]) != _arms(cfg, screen, chosen):
        raise ConfigError(f"confirm: the screen {c.screen} changed since this config was loaded (its rule now "
                          "chooses other arms); rerun the command")
    return {
        "version": PREREG_VERSION,
        "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "rule": c.rule, "k": c.k, "metric": c.metric, "basis": screen.basis,
        "screen": {"name": screen.name, "path": screen.path, "summary": screen.summary_file.name,
                   "sha256": screen.sha256, "seeds": screen.seeds, "trainer": screen.trainer},
        "baseline": _BASELINE, "seeds": list(cfg.grid.seeds),
        "arms": {f"{f:g}": [{"selector": r["selector"], "rank": int(r["rank"]),
                             **screen.specs[r["selector"]],
                             **{k: _num(r[k]) for k in ("delta", "ci_low", "ci_high")}}
                            for r in g.to_dict("records")]
                 for f, g in chosen.items()},
    }


def _num(x: Any) -> float | None:
    x = float(x)
    return x if x == x else None


def read_preregistration(study: Path) -> dict[str, Any] | None:
    """The study's ``preregistration.json``, or None when it has none."""
    path = Path(study) / PREREG_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"confirm: cannot read the pre-registration {path}: {err}") from err


def preregister(cfg: StudyConfig, study: Path) -> dict[str, Any] | None:
    """Write the pre-registration into ``study`` before anything trains, or check the one there.

    A stored one that registered other arms, another rule or another screen
    (by hash) stops the run: its trials may have trained under it.
    """
    new = preregistration(cfg)
    if new is None:
        return None
    old = read_preregistration(study)
    if old is not None:
        diff = _differences(old, new)
        if diff:
            raise ConfigError(
                f"confirm: {Path(study) / PREREG_FILE} registered another design than this config now "
                f"resolves to ({'; '.join(diff)}); a pre-registration does not change once trials may have "
                f"trained under it: restore the screen it was registered on, or run the new design as a new "
                f"study (another name)")
        return old
    Path(study).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(study) / PREREG_FILE, json.dumps(new, indent=1, sort_keys=True))
    return new


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted((set(old) | set(new)) - {"written"}):
        if key == "screen":
            for k in sorted(set(old.get(key) or {}) | set(new.get(key) or {})):
                a, b = (old.get(key) or {}).get(k), (new.get(key) or {}).get(k)
                if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
                    out.append(f"screen.{k} {_short(a)} -> {_short(b)}")
        elif key == "arms":
            a, b = old.get(key) or {}, new.get(key) or {}
            for f in sorted(set(a) | set(b), key=float):
                la = [x["selector"] for x in a.get(f) or []]
                lb = [x["selector"] for x in b.get(f) or []]
                if json.dumps(a.get(f), sort_keys=True) != json.dumps(b.get(f), sort_keys=True):
                    out.append(f"arms at {f}: {la} -> {lb}" if la != lb else f"arms at {f}: their screen Δ")
        elif json.dumps(old.get(key), sort_keys=True) != json.dumps(new.get(key), sort_keys=True):
            out.append(f"{key} {_short(old.get(key))} -> {_short(new.get(key))}")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Design:
    """One fraction of a confirm stage as ``plan`` sizes it, from the screen's own variances."""

    sd_seed: float
    """The screen's median seed sd of Δ over its arms at this fraction."""
    var_rows: float
    """σ²_row / n at this study's eval rows (the screen's, rescaled by its eval rows)."""
    var_err: float | None
    alpha: float
    """0.05 / k: Holm's first step over the ``k`` chosen arms."""
    seeds: int | None
    """Fewest seeds per arm that detect ``confirm.effect`` with 80 % power (None: over 1,000)."""
    mde: float
    """The effect ``grid.seeds`` detects with 80 % power."""


def design(cfg: StudyConfig, screen: Screen, n_eval: int) -> dict[float, Design | None]:
    """Per fraction, :class:`Design` (None where the screen records no variance there), with
    :func:`dataselect.report.stats.seeds_needed`, the report's own test's power."""
    from dataselect.report.stats import min_detectable_effect, seeds_needed

    c = cfg.confirm
    if c is None:
        return {}
    s = screen.eval_summary
    s = s[(s["metric"] == c.metric) & ~s["selector"].isin([_BASELINE, "full"])]
    n_screen = screen.n_eval or n_eval
    alpha = 0.05 / c.k
    out: dict[float, Design | None] = {}
    for f in cfg.grid.fractions:
        g = s[(s["fraction"].astype(float) - f).abs() < 1e-12]
        g = g[g["sd_seed"].notna() & g["var_rows"].notna()] if {"sd_seed", "var_rows"} <= set(g.columns) else g[:0]
        if g.empty:
            out[float(f)] = None
            continue
        sd = float(g["sd_seed"].median())
        var_rows = float(g["var_rows"].median()) * n_screen / n_eval
        var_err = (float(g["var_err"].median()) * n_screen / n_eval
                   if "var_err" in g and g["var_err"].notna().any() else None)
        out[float(f)] = Design(
            sd, var_rows, var_err, alpha,
            seeds_needed(c.effect, sd, var_rows, n_rows=n_eval, var_err=var_err, alpha=alpha),
            min_detectable_effect(sd, var_rows, len(cfg.grid.seeds), n_rows=n_eval, var_err=var_err, alpha=alpha))
    return out


def plan_lines(cfg: StudyConfig, n_eval: int, trial_seconds: float, duration: Callable[[float], str]) -> list[str]:
    """``plan``'s lines for a confirmatory study: per fraction, the seeds each arm needs to detect
    ``confirm.effect`` (:func:`design`), and the trials' time at those seeds (``trial_seconds``,
    the plan's for ``grid.seeds``, scaled by seeds; written by ``duration``). [] otherwise."""
    c = cfg.confirm
    if c is None:
        return []
    screen = read_screen(c)
    out = [f"confirm: {c.k} arms per fraction from screen {screen.name!r} ({screen.path}, seeds "
           f"{screen.seeds[0]}-{screen.seeds[-1]}) by {c.rule} on its {screen.basis} rows, pre-registered in "
           f"{cfg.study_dir / PREREG_FILE} before training"]
    needs: list[int] = []
    for f, d in design(cfg, screen, n_eval).items():
        if d is None:
            out.append(f"confirm at {f * 100:g} %: the screen records no seed or row variance there")
            continue
        if d.seeds is not None:
            needs.append(d.seeds)
        out.append(f"confirm at {f * 100:g} %: a {c.effect * 100:g}-point Δ {c.metric} needs "
                   + (f"{d.seeds} seeds per arm" if d.seeds is not None else "more than 1,000 seeds per arm")
                   + f" (80 % power, Holm over {c.k}: α = {d.alpha:.4g}; the screen's median seed sd "
                   f"{d.sd_seed * 100:.2f} points and row variance ({d.var_rows ** 0.5 * 100:.2f} points)² at "
                   f"{n_eval:,} eval rows); its {len(cfg.grid.seeds)} seeds detect {d.mde * 100:.1f} points")
    if needs:
        most = max(needs)
        out.append(f"confirm: {most} seeds (grid.seeds has {len(cfg.grid.seeds)}): trials about "
                   f"{duration(trial_seconds * most / len(cfg.grid.seeds))} (this plan's trial time scaled by seeds)")
    if screen.n_eval is None:
        out.append(f"confirm: the screen does not record its eval rows; its row variance is taken as of {n_eval:,}")
    tr = screen.trainer
    if tr.get("mode") and (tr.get("mode"), tr.get("model")) != (cfg.trainer.mode, cfg.trainer.model):
        out.append(f"confirm: the screen trained {tr['mode']} {tr.get('model')}, this study {cfg.trainer.mode} "
                   f"{cfg.trainer.model}: its seed spread may not be this trainer's (the seeds above assume it is)")
    return out
