"""A study's trials read back from disk: one row per trial folder of the Tune experiment.

Each trial's ``params.json``, ``result.json`` and ``error.txt`` in
``<study_dir>/tune/<name>/``, its ``predictions.parquet`` and ``kept.parquet``
in ``<study_dir>/trials/``: never a live sweep, so a report can be rebuilt
any time, also after a crash or on another machine.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dataselect.train.metrics import METRICS

log = logging.getLogger(__name__)

FULL_KEY = "full"
BASELINE_KEY = "random"
STATUS_OK = "TERMINATED"


# --------------------------------------------------------------------------- collect
def experiment_dir(study: Path, meta: dict[str, Any]) -> Path:
    tune_dir = study / "tune"
    name = meta.get("name")
    if name and (tune_dir / name).is_dir():
        return tune_dir / name
    cands = [p for p in tune_dir.glob("*") if p.is_dir() and ".prev-" not in p.name] if tune_dir.is_dir() else []
    if len(cands) == 1:
        return cands[0]
    from dataselect.core.errors import UserError

    raise UserError(f"study_dir: no single Tune experiment under {tune_dir} (found {[p.name for p in cands]})")


def _last_json_line(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    last = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                last = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a crash
                continue
    return last


def _error_line(path: Path) -> str | None:
    if not path.is_file():
        return None
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    # Tune's error.txt ends with the innermost exception line ("RuntimeError: ...").
    return lines[-1][:500] if lines else "unknown error"


def count_column(label_name: str) -> str:
    """``n[<name>]``: the results column of one class's row count in a subset.

    Not ``n_<name>``: a class called ``train`` would overwrite ``n_train``.
    """
    return f"n[{label_name}]"


@dataclass(frozen=True)
class TrialRecord:
    """What the report reads of one trial of a Tune experiment, as plain values.

    ``params``: its ``params.json``; ``result``: the last line of its
    ``result.json`` (``{}`` when nothing was reported); ``error``: the last line
    of its ``error.txt``. A study archive (:mod:`dataselect.report.archive`)
    stores exactly these, so a report from the archive reads what one from the
    study folder reads.
    """

    trial: str
    params: dict[str, Any]
    result: dict[str, Any]
    error: str | None


def trial_records(exp_dir: str | Path) -> list[TrialRecord]:
    """One :class:`TrialRecord` per trial folder of a Tune experiment (by folder name)."""
    return [TrialRecord(tdir.name, json.loads((tdir / "params.json").read_text()),
                        _last_json_line(tdir / "result.json") or {}, _error_line(tdir / "error.txt"))
            for tdir in sorted(p for p in Path(exp_dir).iterdir() if (p / "params.json").is_file())]


def collect_results(exp_dir: str | Path, label_names: list[str] | None = None) -> pd.DataFrame:
    """One row per trial folder of a Tune experiment (:func:`results_frame` of its records)."""
    return results_frame(trial_records(exp_dir), label_names)


def results_frame(records: list[TrialRecord], label_names: list[str] | None = None) -> pd.DataFrame:
    """One row per trial: ``results.csv``.

    ``status`` is ``TERMINATED`` (metrics reported), ``ERROR`` (error.txt,
    no metrics) or ``INCOMPLETE`` (started, nothing reported yet).
    """
    rows = []
    for rec in records:
        params = rec.params.get("run", rec.params)  # see sweep.trial_runs
        cell, seed = params.get("cell", {}), params.get("seed")
        res = rec.result
        # A trial's own error is reported as a result (sweep.run_trial_reported), not raised.
        err = res.get("trial_error") or rec.error
        ok = "accuracy" in res
        row: dict[str, Any] = {
            "trial": rec.trial,
            "selector": cell.get("selector"),
            "name": cell.get("name"),
            "params": json.dumps(cell.get("params", {}), sort_keys=True),
            "fraction": cell.get("fraction"),
            "seed": seed,
            "status": STATUS_OK if ok else ("ERROR" if err else "INCOMPLETE"),
            "error": None if ok else err,
            "budget": res.get("budget"),
            "n_train": res.get("n_train"),
        }
        counts = res.get("class_counts") or []
        names = label_names or [str(i) for i in range(len(counts))]
        for i, lab in enumerate(names):
            row[count_column(lab)] = counts[i] if i < len(counts) else None
        row["missing_classes"] = json.dumps([names[i] if i < len(names) else i
                                             for i in res.get("missing_classes", [])]) if ok else None
        for m in METRICS:
            row[m] = res.get(m)
            if f"validation_{m}" in res:  # scored on the validation holdout too (report.validation)
                row[f"validation_{m}"] = res[f"validation_{m}"]
        for k in ("train_loss", "selection_seconds", "train_seconds", "eval_seconds", "steps", "mode", "model",
                  "node_id", "selection_info", "reads_target", "reused_from"):
            row[k] = res.get(k)
        # Fine-tunes before trainer.precision existed ran fp32 on CPU and said so by bf16=False.
        row["compute_dtype"] = (res.get("compute_dtype") or ("bf16" if res.get("bf16") else "fp32")
                            if ok and res.get("mode") != "probe" else None)
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for c in (*METRICS, "fraction", "selection_seconds", "train_seconds", "eval_seconds", "steps", "train_loss"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df.sort_values(["selector", "fraction", "seed"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- per-row files
def load_trial_frames(study: Path, trials: list[str], name: str,
                      unreadable: dict[str, str] | None = None) -> dict[str, pd.DataFrame]:
    """``trials/<trial>/<name>`` for each trial that has it (predictions or kept rows).

    A file that exists but cannot be read is left out with a warning, and its
    trial and the cause go into ``unreadable`` when given (the report lists them).
    """
    out = {}
    for t in trials:
        path = study / "trials" / t / name
        if path.is_file():
            try:
                out[t] = pd.read_parquet(path)
            except (OSError, ValueError) as err:
                log.warning("report: cannot read %s (%s); left out", path, err)
                if unreadable is not None:
                    unreadable[t] = f"{name} unreadable ({type(err).__name__}: {err})"
    return out


class StudyFolder:
    """A study's trials where the sweep wrote them (``runs/<name>/``): the report's reader.

    :class:`~dataselect.report.archive.Archive` answers the same three calls
    from a study archive, so the report is written the same way from either.
    """

    def __init__(self, study: Path, meta: dict[str, Any]) -> None:
        self.study, self.meta = Path(study), meta
        self.tensorboard: Path | None = self.study / "tensorboard"

    def records(self) -> list[TrialRecord]:
        return trial_records(experiment_dir(self.study, self.meta))

    def frames(self, trials: list[str], name: str, unreadable: dict[str, str] | None = None
               ) -> dict[str, pd.DataFrame]:
        return load_trial_frames(self.study, trials, name, unreadable)

    def target_space(self) -> Any:
        """The :class:`~dataselect.report.subsets.TargetSpace` of ``inputs/target/``, or None."""
        from dataselect.report.subsets import load_target_space

        return load_target_space(self.study)
