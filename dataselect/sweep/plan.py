"""What a study will cost and what it can detect, said before anything starts.

``python -m dataselect.sweep plan CONFIG`` runs the same checks as the sweep
(config, data, models, output folder; no Ray) and prints:

* the grid: trials per selector × fraction × seed, and the whole-pool ones;
* the feature families of the pool, eval set and target: cached or to compute;
* a predicted wall time: from this machine's timings of earlier studies when
  the output folder holds one with the same trainer (``timeline.json`` and
  the trials' own seconds), else from a stated rough model of the reference
  2-core CPU machine;
* the smallest accuracy difference the design detects at 80 % power (Holm's
  first step over the selectors of a fraction, or of the whole study with
  ``report.holm: study``), from the eval set's size and a per-fraction seed
  spread and row-level disagreement taken from an earlier study with the
  same trainer or stated as assumptions.

The time model: features = rows to embed / rate per family; each trial =
trial set-up + train examples (``max(ceil(epochs · rows / batch), min_steps)``
steps × batch) × seconds per example + eval rows × seconds per row; trials
spread over the trial slots; plus Ray start-up and the report. It is checked
against a real run in ``tests/sweep/test_plan.py``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dataselect.core.config import StudyConfig, TrainerConfig
from dataselect.core.data import TextDataset

__all__ = ["Plan", "Rates", "make_plan"]

ROUGH = {
    "finetune": {"train_s_per_example": 1 / 95, "eval_s_per_row": 1 / 250, "setup_s": 4.0},
    "probe": {"train_s_per_example": 2e-5, "eval_s_per_row": 2e-5, "setup_s": 1.5},
    "embed_s_per_row": 1 / 300, "other_family_s_per_row": 1 / 3000, "ray_start_s": 4.0, "report_s": 3.0,
}
"""The rough model, measured on the reference 2-core CPU machine with MiniLM
(BENCHMARKS.md: fine-tuning ~95-118 ex/s at max_length 64, evaluation ~250
rows/s, embedding ~300 rows/s; a probe trial is sub-second). Other models or
a GPU make it a guess; the plan says which it used."""

ASSUMED = {"accuracy": 0.8, "sd_seed": 0.01, "disagreement": 0.15}
"""Without an earlier study: accuracy of both arms, the seed spread of a
difference (1 point), and the share of eval rows on which two classifiers
trained on different subsets disagree (its variance per row is what the eval
set's size divides)."""


@dataclass(frozen=True)
class Rates:
    """Seconds per unit of work, and where they come from."""

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
    rates: Rates
    slots: int
    mde: dict[float, float]
    """Fraction -> smallest detectable |Δ accuracy| (80 % power, α = 0.05 / comparisons)."""
    mde_from: str
    n_eval: int
    comparisons: int
    """The Holm family size: selectors vs random per fraction, or all of them (``report.holm: study``)."""
    notes: list[str] = field(default_factory=list)

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
                      + ", ".join(f"{t} {fam} ({rows:,} rows)" for t, fam, _, rows in todo)))
        out.append(f"predicted wall time: about {_duration(self.total_seconds)} on {self.slots} trial "
                   f"slot(s) (" + ", ".join(f"{k} {_duration(v)}" for k, v in self.seconds.items() if v >= 1)
                   + f"); rates from {self.rates.source}")
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
        features, notes = [], [f"feature cache not checked: {err}"]
    rates = _rates(cfg)
    embed = sum(rows for _, fam, cached, rows in features if not cached and fam in ("embedding", "consistency"))
    other = sum(rows for _, fam, cached, rows in features if not cached and fam not in ("embedding", "consistency"))
    trial_s = (n_trials * rates.setup_s + train_examples * rates.train_s_per_example
               + n_trials * n_eval * rates.eval_s_per_row)
    seconds = {"ray start": ROUGH["ray_start_s"],
               "features": embed * ROUGH["embed_s_per_row"] + other * ROUGH["other_family_s_per_row"],
               "trials": trial_s / slots, "report": ROUGH["report_s"]}
    if any(s.startswith("standin:") for s in (fcfg.features.encoder, fcfg.features.perplexity_model or "",
                                              fcfg.features.mlm_model or "")):
        notes.append("stand-in LMs not trained yet are not counted (about a minute each)")
    comparisons = len(trials) - (1 if "random" in trials else 0) - (1 if "full" in trials else 0)
    if cfg.report.holm == "study":
        comparisons *= len(cfg.grid.fractions)
    mde, mde_from = _mde(cfg, n_eval, comparisons)
    return Plan(cfg.name, trials, list(cfg.grid.fractions), list(cfg.grid.seeds), features, seconds, rates,
                slots, mde, mde_from, n_eval, comparisons, notes)


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


def _slots(cfg: StudyConfig) -> int:
    import os

    cpus = cfg.ray.num_cpus or os.cpu_count() or 1
    slots = max(1, int(cpus // cfg.ray.cpus_per_trial))
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


def _rates(cfg: StudyConfig) -> Rates:
    """This machine's rates from earlier studies with the same trainer, else the rough model.

    Studies whose trials ran on as many CPUs as this one's (``ray.cpus_per_trial``)
    come first: a 1-core trial trains at ~60 % of a 2-core one's speed here, so
    mixing them misstates both. A study still running counts by its finished
    trials (its timeline, for the set-up, comes when it ends); adopted results
    (``reused_from``) are another study's seconds and are not counted twice.
    """
    t = cfg.trainer
    by_cpus: dict[bool, tuple[list[float], list[float], list[float], list[str]]] = {
        True: ([], [], [], []), False: ([], [], [], [])}
    for study in sorted(Path(cfg.output_dir).glob("*/study.json")):
        try:
            meta = json.loads(study.read_text())
        except (OSError, ValueError):
            continue
        if not _same_trainer(cfg, meta):
            continue
        cpus = ((meta.get("config") or {}).get("ray") or {}).get("cpus_per_trial")
        train, evals, setups, seen = by_cpus[cpus == cfg.ray.cpus_per_trial]
        n_before = len(train)
        for res in study.parent.glob("trials/*/result.json"):
            try:
                r = json.loads(res.read_text())["result"]
            except (OSError, ValueError, KeyError):
                continue
            steps, n_eval = r.get("steps"), r.get("n_eval")
            if r.get("train_seconds") and steps and n_eval and not r.get("reused_from"):
                examples = steps * t.batch_size if t.mode == "finetune" else r.get("n_train") or 1
                train.append(r["train_seconds"] / max(examples, 1))
                evals.append(r["eval_seconds"] / n_eval)
        try:
            o = json.loads((study.parent / "timeline.json").read_text()).get("overhead") or {}
        except (OSError, ValueError):
            o = {}
        # A timeline that counted reused trials' old seconds as work (before they were
        # marked) has a negative set-up: not a rate.
        if o.get("trials") and o.get("trial_setup", 0) >= 0:
            setups.append((o.get("trial_setup", 0) + max(o.get("tune_gaps", 0), 0)) / o["trials"])
        if len(train) > n_before:
            seen.append(study.parent.name)
    for same_cpus in (True, False):
        train, evals, setups, seen = by_cpus[same_cpus]
        if len(train) >= 3:
            setup = float(np.median(setups)) if setups else ROUGH[t.mode]["setup_s"]
            cpus = "" if same_cpus else f", run on other than {cfg.ray.cpus_per_trial} CPUs per trial"
            return Rates(float(np.median(train)), float(np.median(evals)), setup,
                         f"{len(train)} trials of earlier studies here ({', '.join(seen)}{cpus})")
    r = ROUGH[t.mode]
    return Rates(r["train_s_per_example"], r["eval_s_per_row"], r["setup_s"],
                 "the rough model of the reference 2-core CPU machine with MiniLM (no earlier study "
                 "with this trainer in the output folder)")


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
