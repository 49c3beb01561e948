"""What a study will cost and what it can detect, said before anything starts.

``python -m dataselect.sweep plan CONFIG`` runs the same checks as the sweep
(config, data, models, output folder; no Ray) and prints:

* the grid: trials per selector × fraction × seed, and the whole-pool ones;
* the feature families of the pool, eval set and target: cached or to compute;
* a predicted wall time per stage (Ray start, features, select, trials,
  report), each from this machine's measurements in earlier studies of the
  output folder where there are any, else from a stated rough model of the
  reference 2-core CPU machine (:data:`ROUGH`); the plan says which for each;
* the smallest accuracy difference the design detects at 80 % power (Holm's
  first step over the selectors of a fraction, or of the whole study with
  ``report.holm: study``), from the eval set's size and a per-fraction seed
  spread and row-level disagreement taken from an earlier study with the
  same trainer or stated as assumptions.

The time model, stage by stage:

* features = a fixed stage cost + per family to compute: its model's load +
  rows × seconds per row. The per-row rate comes from earlier studies'
  ``feature_costs`` (what each family cost on their pool and target) of the
  same family *and model* (``features.encoder`` for embedding, consistency
  and the subword ratio, ``perplexity_model`` for perplexity, ...); the
  consistency family embeds ``consistency_variants`` EDA perturbations per
  row, so its rate is per row and variant (measured on the families study:
  embedding 118 s, consistency with 2 variants 227 s, for 27,192 rows).
* select = a fixed stage cost + the selector runs, spread over the cluster's
  CPUs (one task per CPU), each its selection seconds + a per-task overhead.
  The runs are the select stage's own (:func:`~dataselect.sweep.select_stage.plan_jobs`):
  a prefix-consistent selector runs once per seed at its largest budget and
  the smaller budgets are cut from it (~0 s), a seed-free one runs once. A
  run's seconds = pool rows × the median seconds per pool row of earlier runs
  of the same registry name *and* resolved params (the label is only a name),
  else of the same name with other params, else a rough default; the
  per-task overhead comes from earlier timelines (select stage wall minus
  its selections' seconds per CPU, per task).
* each trial = set-up + train examples (``max(ceil(epochs · rows / batch),
  min_steps)`` steps × batch) × seconds per example + eval rows × seconds
  per row; trials spread over the trial slots. Rates from earlier studies'
  trials with the same trainer (and AdamW kernel), else the rough model,
  whose 2-thread rates are scaled to ``ray.cpus_per_trial``.
* plus Ray start-up and the report (a fixed part + one per trial).

It is checked against a real run in ``tests/sweep/test_plan.py``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dataselect.core.config import StudyConfig, TrainerConfig
from dataselect.core.data import TextDataset
from dataselect.sweep.confirm import plan_lines as confirm_plan_lines

__all__ = ["Plan", "Rates", "make_plan"]

ROUGH: dict[str, Any] = {
    "finetune": {"train_s_per_example": 39.2 / 2400, "eval_s_per_row": 24.6 / 3872, "setup_s": 4.0},
    "finetune_foreach_train_s_per_example": 66.2 / 2400,
    "probe": {"train_s_per_example": 2e-5, "eval_s_per_row": 2e-5, "setup_s": 0.2},
    "cpu_share": {1: 0.6},
    "ray_start_s": 4.0, "report_s": 3.0, "report_s_per_trial": 0.065,
    "features_stage_s": 0.5, "family_setup_s": 1.0,
    "family_s_per_row": {"embedding": 1 / 480, "consistency": 1 / 480, "perplexity": 1 / 2795,
                         "pseudo_perplexity": 1 / 406, "llm_judge": 1 / 424},
    "other_family_s_per_row": 1 / 3000,
    "select_stage_s": 3.0, "select_task_s": 0.5, "select_s_per_row": 2e-4,
    "select_free": ("random", "full"),
}
"""The rough model of the reference 2-core CPU machine with MiniLM, from its measurements.

Trials (BENCHMARKS.md, "Trial speed (issue 32)", idle, 2 threads, fp32): a 1 %
trial's 150 steps × 16 rows train in 39.2 s with the fused AdamW (61 ex/s), 66.2 s
with ``foreach`` (36 ex/s); its 3,872 eval rows take 24.6 s (median of the three
variants, 157 rows/s); set-up + Tune's gaps ~4 s a trial (model load 3.1 s on an
actor's first). A trial on one CPU runs at ``cpu_share[1]`` of that speed. A probe
trial is sub-second: 311 of them took 40 s on 2 slots (families_probe,
reports/README.md), ~0.2 s of set-up each.

Features (BENCHMARKS.md, issue 16's feature path, idle): MiniLM embeddings 480
rows/s (consistency: that per EDA variant), the stand-in Qwen3's perplexity 2,795,
pseudo-perplexity 406, the LM judge 424 rows/s; families without a network
(text metrics, n-grams) ~3,000 rows/s; ~1 s to load a family's model (a family
measured faster than that loads faster) and ~0.5 s of stage work besides (cache
reads, the table: in two timed runs the stage was within 0.1 s of its families' seconds).

Select: ~3 s of stage start (worker start-up, imports), ~0.5 s per task, and a
selection ~5 s per 27,192 pool rows (the median selector of the families study;
GraNd ~30 s), except ``select_free`` (random draws, the whole pool: ~1 ms). Report: ~3 s + 0.065 s per trial
(families_probe: 23 s for 311 trials). Other models or a GPU make all of it a
guess; the plan says which parts it used."""

MODEL_FAMILIES = {"embedding": "encoder", "consistency": "encoder", "subword_ratio": "encoder",
                  "perplexity": "perplexity_model", "pseudo_perplexity": "mlm_model",
                  "llm_judge": "judge_model"}
"""Family -> the ``features`` field naming the model it runs (its rates are that model's)."""

ASSUMED = {"accuracy": 0.8, "sd_seed": 0.01, "disagreement": 0.15}
"""Without an earlier study: accuracy of both arms, the seed spread of a
difference (1 point), and the share of eval rows on which two classifiers
trained on different subsets disagree (its variance per row is what the eval
set's size divides)."""


@dataclass(frozen=True)
class Rates:
    """Seconds per unit of trial work, and where they come from."""

    train_s_per_example: float
    eval_s_per_row: float
    setup_s: float
    source: str


@dataclass
class Plan:
    """The plan of one study (see the module docstring); :meth:`lines` prints it."""

    name: str
    trials: dict[str, int]
    """Selector label -> trials (fractions × seeds, whole pool on its seeds)."""
    fractions: list[float]
    seeds: list[int]
    features: list[tuple[str, str, bool, int]]
    """(table, family, cached, rows) for every family of the pool, eval set and target."""
    seconds: dict[str, float]
    """Stage -> predicted wall seconds: ray start, features, select, trials, report."""
    rates: Rates
    slots: int
    mde: dict[float, float]
    """Fraction -> smallest detectable |Δ accuracy| (80 % power, α = 0.05 / comparisons)."""
    mde_from: str
    n_eval: int
    comparisons: int
    """The Holm family size: selectors vs random per fraction, or all of them (``report.holm: study``)."""
    notes: list[str] = field(default_factory=list)
    family_seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    """(table, family) -> predicted seconds of each family to compute (its model load included)."""
    selector_seconds: dict[str, float] = field(default_factory=dict)
    """Selector label -> predicted seconds of its runs (selection alone, summed, before spreading)."""
    selector_runs: dict[str, int] = field(default_factory=dict)
    """Selector label -> select-stage runs it needs (cells cut from a larger run or on disk: none)."""
    sources: dict[str, str] = field(default_factory=dict)
    """Stage -> where its rates came from (``features``, ``select``)."""

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds.values()))

    def lines(self) -> list[str]:
        n = sum(self.trials.values())
        out = [f"plan for study {self.name!r}: {n} trials "
               f"({len(self.fractions)} fractions × {len(self.seeds)} seeds per selector)"]
        width = max(len(k) for k in self.trials)
        out += [f"  {k:<{width}}  {v} trials" for k, v in self.trials.items()]
        todo = [f for f in self.features if not f[2]]
        out.append(f"features: {len(self.features) - len(todo)} of {len(self.features)} families cached"
                   + ("" if not todo else "; to compute: "
                      + ", ".join(f"{t} {fam} ({rows:,} rows, {_duration(self.family_seconds.get((t, fam), 0))})"
                                  for t, fam, _, rows in todo)))
        if "features" in self.sources and todo:
            out.append(f"  feature rates from {self.sources['features']}")
        runs = sum(self.selector_runs.values())
        costly = sorted(self.selector_seconds.items(), key=lambda kv: -kv[1])[:3]
        out.append(f"select: {runs} selector runs, about {_duration(self.seconds.get('select', 0))}"
                   + ("" if not costly or costly[0][1] < 1 else " (most: " + ", ".join(
                       f"{k} {_duration(v)}" for k, v in costly if v >= 1) + ")")
                   + (f"; rates from {self.sources['select']}" if "select" in self.sources else ""))
        out.append(f"predicted wall time: about {_duration(self.total_seconds)} on {self.slots} trial "
                   f"slot(s) (" + ", ".join(f"{k} {_duration(v)}" for k, v in self.seconds.items() if v >= 1)
                   + f"); trial rates from {self.rates.source}")
        for frac, mde in self.mde.items():
            out.append(f"detects at {frac * 100:g} %: |Δ accuracy| >= {mde * 100:.1f} points with "
                       f"{len(self.seeds)} seeds and {self.n_eval:,} eval rows (80 % power, Holm over "
                       f"{max(self.comparisons, 1)} comparisons; {self.mde_from})")
        return out + [f"note: {n}" for n in self.notes]


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def make_plan(cfg: StudyConfig, ds: TextDataset, *, slots: int | None = None) -> Plan:
    """The :class:`Plan` of ``cfg`` on the loaded dataset ``ds`` (no Ray, nothing written)."""
    from dataselect.core.errors import ModelError
    from dataselect.sweep.select_stage import budget_for, grid_specs
    from dataselect.sweep.stages import resolve_standins
    from dataselect.sweep.trial import trial_name_for

    n_pool, n_eval = len(ds.train), len(ds.eval)
    slots = slots or _slots(cfg)
    specs = grid_specs(cfg)
    trials: dict[str, int] = {}
    train_examples = 0.0
    n_trials = 0
    on_disk = {"finished": 0, "adoptable": 0}
    lender = cfg.lending_study if cfg.trainer.mode != "probe" else None
    for spec, frac in specs:
        seeds = cfg.grid.seeds
        if spec.key == "full" and cfg.grid.full_reference_seeds is not None:
            seeds = seeds[: cfg.grid.full_reference_seeds]
        trials[spec.key] = trials.get(spec.key, 0) + len(seeds)
        for seed in seeds:
            where = _finished_where(cfg.study_dir, lender, trial_name_for(spec.key, frac, seed))
            if where is not None:
                on_disk[where] += 1
                continue  # its seconds were spent already
            n_trials += 1
            train_examples += _examples(cfg.trainer, budget_for(frac, n_pool))
    notes: list[str] = []
    if on_disk["finished"] or on_disk["adoptable"]:
        notes.append(f"{on_disk['finished']} trials have a finished result in the study folder and "
                     f"{on_disk['adoptable']} in cache_dir's study ({cfg.cache_root}); the time counts only the "
                     f"{n_trials} others (a result whose config or rows changed runs again)")
    fcfg = resolve_standins(cfg, ds, build=False)  # trained stand-ins key their features like the sweep's
    try:
        features = _feature_status(fcfg, ds)
    except ModelError as err:
        features, notes = [], [*notes, f"feature cache not checked: {err}"]
    earlier = _earlier_studies(cfg)
    rates = _rates(cfg, earlier)
    family_s, features_src = _feature_seconds(cfg, features, earlier)
    select_s, sel_s, sel_runs, select_src = _select_seconds(cfg, n_pool, earlier)
    trial_s = (n_trials * rates.setup_s + train_examples * rates.train_s_per_example
               + n_trials * n_eval * rates.eval_s_per_row)
    n_all = sum(trials.values())
    seconds = {"ray start": ROUGH["ray_start_s"],
               "features": ROUGH["features_stage_s"] + sum(family_s.values()),
               "select": select_s, "trials": trial_s / slots,
               "report": ROUGH["report_s"] + n_all * _report_s_per_trial(earlier)}
    if any(s.startswith("standin:") for s in (fcfg.features.encoder, fcfg.features.perplexity_model or "",
                                              fcfg.features.mlm_model or "")):
        notes.append("stand-in LMs not trained yet are not counted (about a minute each)")
    rough = rates.source.startswith("the rough model") or "rough" in features_src + select_src
    if rough and (busy := _busy_note()):
        notes.append(busy)
    comparisons = len(trials) - (1 if "random" in trials else 0) - (1 if "full" in trials else 0)
    if cfg.confirm is not None:  # each fraction tests only the arms its screen chose
        comparisons = min(comparisons, cfg.confirm.k)
        notes += confirm_plan_lines(cfg, n_eval, seconds["trials"], _duration)
    if cfg.report.holm == "study":
        comparisons *= len(cfg.grid.fractions)
    mde, mde_from = _mde(cfg, n_eval, comparisons)
    return Plan(cfg.name, trials, list(cfg.grid.fractions), list(cfg.grid.seeds), features, seconds, rates,
                slots, mde, mde_from, n_eval, comparisons, notes, family_s, sel_s, sel_runs,
                {"features": features_src, "select": select_src})


def _busy_note() -> str | None:
    """A note when this machine is busy now: the rough model's rates are an idle machine's."""
    try:
        load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    except OSError:
        return None
    if load <= cpus / 2:
        return None
    return (f"this machine's load average is {load:.1f} on {cpus} CPUs and the rough model's rates are "
            f"an idle machine's: what it predicts may take up to {(load + cpus) / cpus:.1f}x longer while "
            "that load lasts (measured rates carry the load they were measured under)")


def _finished_where(study: Path, lender: Path | None, name: str) -> str | None:
    """``finished`` when the study holds a result for trial ``name``, ``adoptable`` when the
    lending study (``cache_dir``) does, else None. Whether it is still current (same
    config, same rows) is checked when the trial runs; the plan takes it at its word."""
    if (study / "trials" / name / "result.json").is_file():
        return "finished"
    if lender is not None and (lender / "trials" / name / "result.json").is_file():
        return "adoptable"
    return None


def _examples(t: TrainerConfig, rows: int) -> float:
    """Training examples one trial sees: steps × batch (fine-tune), or its rows once (probe)."""
    if t.mode == "probe":
        return float(rows)
    steps = max(1, math.ceil(t.epochs * math.ceil(rows / t.batch_size)), t.min_steps)
    return float(steps * min(t.batch_size, rows))


def _cpus(cfg: StudyConfig) -> int:
    """The CPUs the sweep's Ray gets here (select tasks take one each)."""
    return int(cfg.ray.num_cpus or os.cpu_count() or 1)


def _slots(cfg: StudyConfig) -> int:
    slots = max(1, int(_cpus(cfg) // cfg.ray.cpus_per_trial))
    return min(slots, cfg.ray.max_concurrent_trials or slots)


def _feature_status(cfg: StudyConfig, ds: TextDataset) -> list[tuple[str, str, bool, int]]:
    """(table, family, cached, rows) of every family the sweep would compute."""
    from dataselect.core.data import frame_fingerprint
    from dataselect.features.families import FAMILIES, default_families
    from dataselect.features.runner import _key
    from dataselect.features.store import FeatureStore
    from dataselect.selectors import get_selector

    store = FeatureStore(cfg.cache_root / "features")
    needs = {c for s in cfg.selectors for c in get_selector(s.name, **dict(s.params)).required()}
    frames = []
    if not (cfg.trainer.mode == "finetune" and not needs - {"id", "label"} and cfg.target is None):
        frames.append(("pool", ds.train, sorted(default_families(cfg.features))))
        if cfg.trainer.mode == "probe" or cfg.target is not None:
            frames.append(("eval", ds.eval, ["embedding"]))
    if ds.target is not None:
        frames.append(("target", ds.target.frame, sorted(default_families(cfg.features))))
    out = []
    for table, frame, fams in frames:
        fp = frame_fingerprint(frame.sort_values("id", kind="stable"), labels=False)
        for fam in fams:
            specs = [FAMILIES[fam](cfg.features, dev) for dev in ("cpu", "cuda")]
            # A stand-in's key needs its trained weights: not trained yet, not cached.
            cached = not any((s.model_ref or "").startswith("standin:") for s in specs) and any(
                store.read_meta(_key(s, fp, cfg.features.shard_size)) is not None for s in specs)
            out.append((table, fam, cached, len(frame)))
    return out


# --------------------------------------------------------------------------- earlier studies


@dataclass(frozen=True)
class _Earlier:
    """One earlier study of the output folder: its ``study.json`` and ``timeline.json`` (or {})."""

    name: str
    folder: Path
    meta: dict[str, Any]
    timeline: dict[str, Any]


def _earlier_studies(cfg: StudyConfig) -> list[_Earlier]:
    """Every readable ``<output_dir>/*/study.json``, with its timeline when it has one."""
    out = []
    for study in sorted(Path(cfg.output_dir).glob("*/study.json")):
        try:
            meta = json.loads(study.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(meta, dict):
            continue
        try:
            timeline = json.loads((study.parent / "timeline.json").read_text())
        except (OSError, ValueError):
            timeline = {}
        out.append(_Earlier(study.parent.name, study.parent, meta, timeline if isinstance(timeline, dict) else {}))
    return out


def _section(meta: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """``meta[k1][k2]...`` as a dict, {} where any level is missing or not a mapping."""
    out: Any = meta
    for k in keys:
        out = out.get(k) if isinstance(out, Mapping) else None
    return dict(out) if isinstance(out, Mapping) else {}


def _family_model(family: str, features: Mapping[str, Any]) -> str | None:
    """The model ``family`` runs under these ``features`` settings (None: no model)."""
    field_ = MODEL_FAMILIES.get(family)
    if field_ is None:
        return None
    if family == "llm_judge":
        return features.get("judge_model") or features.get("perplexity_model")
    return features.get(field_)


def _family_units(family: str, features: Mapping[str, Any]) -> int:
    """Model passes per row: the consistency family embeds each of its EDA variants."""
    return max(1, int(features.get("consistency_variants") or 1)) if family == "consistency" else 1


def _family_setup(family: str) -> float:
    return ROUGH["family_setup_s"] if family in MODEL_FAMILIES else 0.0


def _feature_seconds(cfg: StudyConfig, features: list[tuple[str, str, bool, int]],
                     earlier: list[_Earlier]) -> tuple[dict[tuple[str, str], float], str]:
    """Predicted seconds per (table, family) to compute, and where the rates came from.

    Each earlier measurement (a family's seconds on an earlier study's pool or
    target) of the same family and model gives (rows × passes, seconds less the
    model load, at most all of them); the rate is their sum over their rows, so a
    large table weighs more than a 1,000-row target whose seconds are mostly
    start-up, and the load is their mean.
    """
    work: dict[tuple[str, str | None], list[float]] = {}
    seen: set[tuple[Any, ...]] = set()
    studies: dict[tuple[str, str | None], set[str]] = {}
    for e in earlier:
        fset = _section(e.meta, "config", "features")
        rows = {"pool": _section(e.meta, "dataset").get("n_pool"), "target": _section(e.meta, "target").get("n_rows")}
        for table, fams in _section(e.meta, "feature_costs").items():
            n = rows.get(table)
            if not n or not isinstance(fams, Mapping):
                continue
            for fam, cost in fams.items():
                sec = cost.get("seconds") if isinstance(cost, Mapping) else None
                if not isinstance(sec, (int, float)) or not math.isfinite(sec):
                    continue
                key = (fam, _family_model(fam, fset))
                if (*key, n, sec) in seen:  # the same cached family, listed by two studies
                    continue
                seen.add((*key, n, sec))
                units = float(n) * _family_units(fam, fset)
                setup = min(_family_setup(fam), float(sec))
                acc = work.setdefault(key, [0.0, 0.0, 0.0, 0.0])  # work s, row-passes, set-up s, measurements
                acc[0] += float(sec) - setup
                acc[1] += units
                acc[2] += setup
                acc[3] += 1
                studies.setdefault(key, set()).add(e.name)
    fset_now = cfg.features.model_dump(mode="json")
    out: dict[tuple[str, str], float] = {}
    measured = rough = 0
    used: set[str] = set()
    for table, fam, cached, rows in features:
        if cached:
            continue
        key = (fam, _family_model(fam, fset_now))
        acc = work.get(key)
        if acc is not None and acc[1] > 0:
            rate, setup, measured = acc[0] / acc[1], acc[2] / acc[3], measured + 1
            used |= studies[key]
        else:
            rate = ROUGH["family_s_per_row"].get(fam, ROUGH["other_family_s_per_row"])
            setup, rough = _family_setup(fam), rough + 1
        out[(table, fam)] = setup + rows * _family_units(fam, fset_now) * rate
    src = (f"{measured} of {measured + rough} families measured in earlier studies here "
           f"({', '.join(sorted(used))}; same family and model)" if measured else "")
    if rough:
        src += ("; " if src else "") + f"the rough model for {rough} of {measured + rough}"
    return out, src


def _selector_key(name: str, params: Mapping[str, Any]) -> tuple[str, str] | None:
    """(registry name, resolved params as JSON): what a selector's cost is matched on; None
    when today's registry cannot build it (a removed selector or param)."""
    from dataselect.selectors import get_selector

    try:
        resolved = get_selector(name, **dict(params)).params()
    except Exception:  # noqa: BLE001 - an old study's selector that no longer builds: no rate
        return None
    return name, json.dumps(resolved, sort_keys=True, default=str)


def _selection_rates(earlier: list[_Earlier]) -> tuple[dict[tuple[str, str], list[float]],
                                                       dict[str, list[float]], list[float], set[str]]:
    """Earlier selector runs: seconds per pool row by (name, params) and by name; per-task
    overheads from timelines; the studies used.

    A run is a manifest computed by a task: cut ones (``sliced_from``) cost ~0 and
    are skipped, and a manifest serving several cells (a seed-free selector, or a
    reused cut one, which no longer says so) counts once. A reused manifest still
    carries the seconds of the task that computed it.
    """
    by_key: dict[tuple[str, str], list[float]] = {}
    by_name: dict[str, list[float]] = {}
    overheads: list[float] = []
    used: set[str] = set()
    for e in earlier:
        n_pool = _section(e.meta, "dataset").get("n_pool")
        sels = e.meta.get("selections")
        if not n_pool or not isinstance(sels, list):
            continue
        keys: dict[str, tuple[str, str] | None] = {"full": _selector_key("full", {})}
        for s in _section(e.meta, "config").get("selectors") or []:
            if isinstance(s, Mapping) and s.get("name"):
                keys[s.get("label") or s["name"]] = _selector_key(s["name"], s.get("params") or {})
        seen: set[Any] = set()
        fresh: list[float] = []  # seconds of the runs this study's own select stage computed
        for r in sels:
            if not isinstance(r, Mapping) or r.get("sliced_from") is not None:
                continue
            ident = r.get("path") or (r.get("selector"), r.get("budget"), r.get("seed"))
            if ident in seen:
                continue
            seen.add(ident)
            sec = r.get("seconds")
            ok = isinstance(sec, (int, float)) and math.isfinite(sec) and not r.get("error")
            if not r.get("reused"):
                fresh.append(float(sec) if ok else 0.0)
            key = keys.get(str(r.get("selector")))
            if ok and key is not None:
                by_key.setdefault(key, []).append(float(sec) / n_pool)
                by_name.setdefault(key[0], []).append(float(sec) / n_pool)
                used.add(e.name)
        wall = _section(e.timeline, "stages").get("select")
        if fresh and isinstance(wall, (int, float)):
            cpus = int(_section(e.meta, "config", "ray").get("num_cpus") or os.cpu_count() or 1)
            extra = float(wall) - ROUGH["select_stage_s"] - sum(fresh) / cpus
            overheads.append(max(extra, 0.0) * cpus / len(fresh))
            used.add(e.name)
    return by_key, by_name, overheads, used


def _select_seconds(cfg: StudyConfig, n_pool: int, earlier: list[_Earlier]
                    ) -> tuple[float, dict[str, float], dict[str, int], str]:
    """Predicted select-stage wall seconds, per selector label its runs' seconds and count,
    and where the rates came from.

    The runs are grouped as :func:`~dataselect.sweep.select_stage.plan_jobs` groups
    them; cells whose manifest this study's own ``study.json`` lists and that is
    still on disk are reused and cost nothing (taken at their word, as trials are).
    """
    from dataselect.selectors import get_selector
    from dataselect.sweep.select_stage import budget_for, grid_specs

    by_key, by_name, overheads, used = _selection_rates(earlier)
    on_disk = _manifests_on_disk(cfg)
    jobs: dict[tuple[Any, ...], str] = {}
    for spec, frac in grid_specs(cfg):
        selector = get_selector(spec.name, **dict(spec.params))
        params = json.dumps(selector.params(), sort_keys=True, default=str)
        budget = budget_for(frac, n_pool)
        for seed in cfg.grid.seeds:
            if (spec.key, float(frac), int(seed)) in on_disk:
                continue
            run_seed = seed if selector.seeded else 0
            group = (spec.name, params, run_seed, None if selector.prefix_consistent else budget)
            jobs.setdefault(group, spec.key)
    per_label: dict[str, float] = {}
    runs: dict[str, int] = {}
    how = {"same": 0, "name": 0, "rough": 0}
    rated: set[str] = set()
    for (name, params, _, _), label in jobs.items():
        if (name, params) in by_key:
            rate, kind = float(np.median(by_key[(name, params)])), "same"
        elif name in by_name:
            rate, kind = float(np.median(by_name[name])), "name"
        else:
            rate, kind = (0.0 if name in ROUGH["select_free"] else ROUGH["select_s_per_row"]), "rough"
        if label not in rated:
            how[kind] += 1
            rated.add(label)
        per_label[label] = per_label.get(label, 0.0) + rate * n_pool
        runs[label] = runs.get(label, 0) + 1
    task = float(np.median(overheads)) if overheads else ROUGH["select_task_s"]
    seconds = 0.0 if not jobs else (ROUGH["select_stage_s"]
                                    + (sum(per_label.values()) + len(jobs) * task) / _cpus(cfg))
    parts = []
    if how["same"] or how["name"]:
        parts.append(f"earlier studies here ({', '.join(sorted(used))}): {how['same']} selectors by name and "
                     f"params" + (f", {how['name']} by name alone (other params)" if how["name"] else ""))
    if how["rough"]:
        parts.append(f"{how['rough']} selectors at the rough default ({ROUGH['select_s_per_row'] * 1e4:g} s "
                     "per 10k pool rows)")
    parts.append(f"{task:.2f} s per task ({'earlier timelines' if overheads else 'rough'}) over {_cpus(cfg)} CPUs")
    if on_disk:
        parts.append(f"{len(on_disk)} cells' manifests on disk, reused")
    return seconds, per_label, runs, "; ".join(parts)


def _manifests_on_disk(cfg: StudyConfig) -> set[tuple[str, float, int]]:
    """(selector, fraction, seed) cells whose manifest this study's ``study.json`` lists and that is
    still there: the select stage reuses them (a changed config gets other keys; the plan trusts it)."""
    try:
        meta = json.loads((cfg.study_dir / "study.json").read_text())
    except (OSError, ValueError):
        return set()
    out = set()
    for r in (meta.get("selections") if isinstance(meta, dict) else None) or []:
        try:
            if r.get("path") and not r.get("error") and Path(r["path"]).is_file():
                out.add((str(r["selector"]), float(r["fraction"]), int(r["seed"])))
        except (AttributeError, KeyError, TypeError, ValueError):
            continue
    return out


def _report_s_per_trial(earlier: list[_Earlier]) -> float:
    """Report seconds per trial beyond its fixed part: earlier timelines' median, else rough."""
    per = []
    for e in earlier:
        rep, n = _section(e.timeline, "stages").get("report"), len(e.timeline.get("trials") or [])
        if isinstance(rep, (int, float)) and n:
            per.append(max(float(rep) - ROUGH["report_s"], 0.0) / n)
    return float(np.median(per)) if per else ROUGH["report_s_per_trial"]


# --------------------------------------------------------------------------- trials


def _cpu_share(cpus_per_trial: float) -> float:
    """Speed of a trial on ``cpus_per_trial`` CPUs relative to the rough model's 2 threads."""
    one = ROUGH["cpu_share"][1]
    if cpus_per_trial >= 2:
        return 1.0
    if cpus_per_trial >= 1:
        return one + (1 - one) * (cpus_per_trial - 1)
    return one * cpus_per_trial  # several trials share a core


def _rates(cfg: StudyConfig, earlier: list[_Earlier]) -> Rates:
    """This machine's trial rates from earlier studies with the same trainer, else the rough model.

    Studies whose trials ran on as many CPUs as this one's (``ray.cpus_per_trial``)
    come first: a 1-core trial trains at ~60 % of a 2-core one's speed here, so
    mixing them misstates both. A study still running counts by its finished
    trials (its timeline, for the set-up, comes when it ends); adopted results
    (``reused_from``) are another study's seconds and are not counted twice.
    The set-up per trial is the trials' own set-up plus Tune's gaps, which the
    timeline gives per slot (so times the slots, per trial).
    """
    t = cfg.trainer
    by_cpus: dict[bool, tuple[list[float], list[float], list[float], list[str]]] = {
        True: ([], [], [], []), False: ([], [], [], [])}
    for e in earlier:
        meta = e.meta
        if not _same_speed(cfg, meta):
            continue
        cpus = ((meta.get("config") or {}).get("ray") or {}).get("cpus_per_trial")
        train, evals, setups, seen = by_cpus[cpus == cfg.ray.cpus_per_trial]
        n_before = len(train)
        for res in e.folder.glob("trials/*/result.json"):
            try:
                r = json.loads(res.read_text())["result"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            steps, n_eval = r.get("steps"), r.get("n_eval")
            if r.get("train_seconds") and steps and n_eval and not r.get("reused_from"):
                examples = steps * t.batch_size if t.mode == "finetune" else r.get("n_train") or 1
                train.append(r["train_seconds"] / max(examples, 1))
                evals.append(r["eval_seconds"] / n_eval)
        o = e.timeline.get("overhead") or {}
        # A timeline that counted reused trials' old seconds as work (before they were
        # marked) has a negative set-up: not a rate.
        if o.get("trials") and o.get("trial_setup", 0) >= 0:
            gaps = max(o.get("tune_gaps", 0), 0) * max(o.get("slots", 1), 1)
            setups.append((o.get("trial_setup", 0) + gaps) / o["trials"])
        if len(train) > n_before:
            seen.append(e.name)
    for same_cpus in (True, False):
        train, evals, setups, seen = by_cpus[same_cpus]
        if len(train) >= 3:
            setup = float(np.median(setups)) if setups else ROUGH[t.mode]["setup_s"]
            cpus = "" if same_cpus else f", run on other than {cfg.ray.cpus_per_trial} CPUs per trial"
            return Rates(float(np.median(train)), float(np.median(evals)), setup,
                         f"{len(train)} trials of earlier studies here ({', '.join(seen)}{cpus})")
    r = ROUGH[t.mode]
    train = r["train_s_per_example"]
    if t.mode == "finetune" and t.adamw == "foreach":
        train = ROUGH["finetune_foreach_train_s_per_example"]
    share = _cpu_share(cfg.ray.cpus_per_trial) if t.mode == "finetune" else 1.0
    return Rates(train / share, r["eval_s_per_row"] / share, r["setup_s"],
                 "the rough model of the reference 2-core CPU machine with MiniLM"
                 + (f" at {share:.0%} of its 2-thread speed ({cfg.ray.cpus_per_trial:g} CPU per trial)"
                    if share != 1 else "") + " (no earlier study with this trainer in the output folder)")


def _same_speed(cfg: StudyConfig, meta: dict) -> bool:
    """An earlier study trained at this one's speed: the same trainer and AdamW kernel (a study
    written before ``trainer.adamw`` existed ran the per-tensor loop, ~``foreach``'s speed)."""
    tr = (meta.get("config") or {}).get("trainer") or {}
    return _same_trainer(cfg, meta) and (tr.get("adamw") or "foreach") == cfg.trainer.adamw


def _mde(cfg: StudyConfig, n_eval: int, comparisons: int) -> tuple[dict[float, float], str]:
    """Per fraction, :func:`~dataselect.report.stats.min_detectable_effect` of this design."""
    from dataselect.report.stats import min_detectable_effect

    earlier = _earlier_summary(cfg)
    alpha = 0.05 / max(comparisons, 1)
    err = float("nan")  # σ²_error per row; unknown: the power model assumes it equals σ²_row
    if earlier is None:
        sd = {float(f): ASSUMED["sd_seed"] for f in cfg.grid.fractions}
        disagreement = ASSUMED["disagreement"]
        src = (f"assumed: seed sd {ASSUMED['sd_seed'] * 100:g} points, {ASSUMED['disagreement']:.0%} "
               "of eval rows on which two arms disagree")
    else:
        sd, var_rows_e, var_err_e, n_eval_e, src = earlier
        disagreement, err = var_rows_e * n_eval_e, var_err_e * n_eval_e
    mde = {float(f): min_detectable_effect(sd[float(f)], disagreement / n_eval, len(cfg.grid.seeds),
                                           n_rows=n_eval, var_err=err / n_eval, alpha=alpha)
           for f in cfg.grid.fractions}
    return mde, src


def _same_trainer(cfg: StudyConfig, meta: dict) -> bool:
    """An earlier study trained like this one (mode, model, length, batch): its timings and spread apply."""
    t, tr = cfg.trainer, (meta.get("config") or {}).get("trainer") or {}
    return all(tr.get(k) == v for k, v in
               {"mode": t.mode, "model": t.model, "max_length": t.max_length, "batch_size": t.batch_size}.items())


def _earlier_summary(cfg: StudyConfig) -> tuple[dict[float, float], float, float, int, str] | None:
    """(fraction -> median seed sd, median row and error variances, its eval rows, source) from an
    earlier report (the error variance NaN in reports written before it was recorded).

    Only studies with the same trainer count (a probe's spread says nothing of
    a fine-tune's), the one with the most of this grid's fractions first; a
    fraction it lacks takes the median over all its fractions. The seed
    spread shrinks with the subset (1.9 points at 1 %, 0.8 at 5 % in
    reports/target), so one median for all fractions misstates both.
    """
    import pandas as pd

    best: tuple[int, str, pd.DataFrame, int] | None = None
    for summary in sorted(Path(cfg.output_dir).glob("*/report/summary.csv")):
        try:
            meta = json.loads((summary.parent.parent / "study.json").read_text())
            if not _same_trainer(cfg, meta):
                continue
            s = pd.read_csv(summary)
            s = s[(s["metric"] == "accuracy") & s["var_rows"].notna() & s["sd_seed"].notna()]
            n = int((meta.get("dataset") or {}).get("n_eval") or 0)
        except (OSError, ValueError, KeyError):
            continue
        if not len(s) or not n:
            continue
        shared = len({float(f) for f in s["fraction"]} & {float(f) for f in cfg.grid.fractions})
        if best is None or shared > best[0]:
            best = (shared, summary.parent.parent.name, s, n)
    if best is None:
        return None
    _, name, s, n = best
    overall = float(s["sd_seed"].median())
    by_frac = s.groupby("fraction")["sd_seed"].median()
    sd = {float(f): float(by_frac.get(f, overall)) for f in cfg.grid.fractions}
    spread = ", ".join(f"{f * 100:g} %: {v * 100:.2f}" for f, v in sd.items())
    var_err = float(s["var_err"].median()) if "var_err" in s else float("nan")
    return sd, float(s["var_rows"].median()), var_err, n, (f"seed sd (points; {spread}) and row variance of study "
                                                  f"{name!r}, same trainer")
