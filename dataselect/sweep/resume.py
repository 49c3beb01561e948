"""What ``--resume`` may continue: the same study, and a Tune state this user wrote.

Tune restores an experiment with the grid it was first given and reports its
finished trials as they were, so a resume under a changed config would
report results that no single config produced. A sweep therefore stores
what its results depend on in ``<study>/identity.json``, written when it
creates or restores its Tune experiment: the config (every result-changing
field; :data:`NOT_RESULTS` lists those that change none), the data's content
fingerprint, the code versions of its selectors and trainer, the key of its
``inputs/`` and each cell's manifest. ``--resume`` compares them with the
current run at three points, each before anything of the old run is
overwritten, and stops with one line naming what changed and the two ways on
(the old config, or a fresh start) when they differ:

1. before Ray starts: config, data, code (:func:`check_config`);
2. once the features are known, before ``inputs/`` is rewritten (:func:`check_inputs`);
3. once the selections are known, before Tune restores (:func:`check_selections`).

Only additions to the grid (new seeds, fractions or selectors: every trial
of the old grid is still in the new one, under the same key) are allowed:
the sweep then starts a new Tune experiment over the whole grid and each
finished trial whose cached result still matches its key is reused.

A study written before ``identity.json`` existed is compared with its
``study.json`` (the config and data fingerprint), ``inputs/inputs.json`` and
``study.json``'s selections. Fields added to the config since then are read
as the value that does what the code did before them (:data:`ABSENT`, else
the field's default, which the project's compatibility rule makes that
value); code versions absent are 1.

``--resume`` also unpickles Tune's state (``tuner.pkl``, the experiment
state), which can run code: :func:`check_tune_state` refuses a state not
owned by the running user or writable by others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dataselect.core.atomic import atomic_write_text
from dataselect.core.config import (
    DatasetConfig,
    FeaturesConfig,
    GridConfig,
    StudyConfig,
    TargetConfig,
    TrainerConfig,
)
from dataselect.core.errors import UserError

log = logging.getLogger(__name__)

IDENTITY_FILE = "identity.json"
IDENTITY_VERSION = 1

NOT_RESULTS = frozenset({
    "name", "output_dir", "cache_dir", "archive", "ray", "report",
    # Throughput only: no result depends on them.
    "features.num_actors", "features.batch_size", "features.perplexity_batch_size",
    "features.mlm_batch_size",
    # These change results through the feature table's key (dtype, shards), which
    # check_inputs compares by content: 'auto' and 'cpu' on a CPU machine are one table.
    "features.device", "features.shard_size",
})
"""Config fields (whole sections or ``section.field``) that change no result, or whose
effect :func:`check_inputs` / :func:`check_selections` compare by content. ``ray``
includes ``select_task_memory_gb``, whose effect (the partitions of ``partitions:
auto``) is in the manifest keys."""

ABSENT = {"trainer.precision": "auto", "trainer.adamw": "foreach", "dataset.holdout_match": "whitespace",
          "grid.selector_streams": "shared"}
"""What a field added to the config since a study ran means when that study's stored
config lacks it: the value that does what the code did then (``precision: auto``: bf16
on CUDA, fp32 on CPU, as the trainer always did; ``adamw: foreach``: bit for bit the
old per-tensor loop; ``holdout_match: whitespace`` and ``selector_streams: shared``:
the rules before those settings). Fields not listed mean their default. A new field whose default
is not the old behaviour (the configs of running studies pin the old one) must be
listed here, or resuming those studies is refused as a changed config."""

_SECTIONS: dict[str, type[BaseModel]] = {"dataset": DatasetConfig, "features": FeaturesConfig,
                                        "trainer": TrainerConfig, "target": TargetConfig,
                                        "grid": GridConfig}
GRID_EXTENT = frozenset({"grid.fractions", "grid.seeds", "grid.full_reference", "grid.full_reference_seeds"})
"""Grid fields that say which trials run, not how: compared as the set of trials
(:func:`trial_runs`), so a grid that only grows may be resumed."""
_MORE = 4
"""Changed trials named in the error line before '... and N more'."""


class ResumeError(UserError):
    """``--resume`` was asked for a study that is not the one on disk (or an untrusted Tune state)."""


# --------------------------------------------------------------------------- identity
@dataclass
class Identity:
    """What a study's results depend on (see the module docstring)."""

    config: dict[str, Any]
    """The study config as JSON (``StudyConfig.model_dump(mode="json")``)."""
    data: str | None = None
    """Content fingerprint of the dataset (None: not known)."""
    code: dict[str, Any] | None = None
    """``{"trainer": int, "selectors": {label: {class: version}}}`` (None: all version 1)."""
    inputs: str | None = None
    """Key of ``inputs/`` (None: not known yet)."""
    manifests: dict[str, str] = field(default_factory=dict)
    """Cell id (``selector|fraction|seed``) -> manifest file name."""

    def to_json(self) -> dict[str, Any]:
        fields = result_fields(self)
        return {"version": IDENTITY_VERSION,
                "hash": hashlib.sha256(_canon(fields).encode()).hexdigest()[:16], "fields": fields,
                "config": self.config, "data": self.data, "code": self.code, "inputs": self.inputs,
                "manifests": dict(sorted(self.manifests.items()))}


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def code_versions(cfg: StudyConfig) -> dict[str, Any]:
    """The code versions this run's results come from: trainer, and each selector's (other than 1)."""
    from dataselect.selectors import get_selector
    from dataselect.sweep.trial import trainer_code_version

    return {"trainer": trainer_code_version(cfg.trainer.mode),
            "selectors": {s.key: get_selector(s.name, **dict(s.params)).code_versions()
                          for s in cfg.selectors}}


def current_identity(cfg: StudyConfig, data_fingerprint: str | None) -> Identity:
    """This run's identity as far as it is known before Ray starts."""
    return Identity(config=cfg.model_dump(mode="json"), data=data_fingerprint, code=code_versions(cfg))


def _filled(model: type[BaseModel], value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``value`` with the fields of ``model`` it lacks (added since it was written) as
    :data:`ABSENT` says, and without those ``model`` no longer has."""
    out = {k: v for k, v in value.items() if k in model.model_fields}
    for name, info in model.model_fields.items():
        if name not in out and info.is_required():
            continue
        if name not in out:
            default = ABSENT.get(f"{prefix}{name}", info.get_default(call_default_factory=True))
            out[name] = default.model_dump(mode="json") if isinstance(default, BaseModel) else default
    return out


def result_fields(ident: Identity) -> dict[str, Any]:
    """``{field: value}`` of everything the results depend on but the grid's extent."""
    out: dict[str, Any] = {}
    for section, value in _filled(StudyConfig, ident.config).items():
        if section in NOT_RESULTS or section == "selectors":
            continue
        if isinstance(value, Mapping) and section in _SECTIONS:
            for k, v in _filled(_SECTIONS[section], value, f"{section}.").items():
                if f"{section}.{k}" not in NOT_RESULTS | GRID_EXTENT:
                    out[f"{section}.{k}"] = v
        else:
            out[section] = value
    code = ident.code or {}
    out["code.trainer"] = int(code.get("trainer", 1))
    versions = code.get("selectors") or {}
    for spec in ident.config.get("selectors") or []:
        key = spec.get("label") or spec.get("name")
        out[f"selectors[{key}]"] = {"name": spec.get("name"), "params": spec.get("params") or {}}
        out[f"code.selectors[{key}]"] = dict(versions.get(key) or {})
    if ident.data is not None:
        out["data.fingerprint"] = ident.data
    return out


def trial_runs(config: Mapping[str, Any]) -> set[tuple[str, float, int]]:
    """(selector key, fraction, seed) of every trial of a config's grid (as the sweep builds it)."""
    from dataselect.sweep.select_stage import FULL_KEY

    grid = config.get("grid") or {}
    specs = config.get("selectors") or []
    keys = [s.get("label") or s.get("name") for s in specs]
    seeds = list(grid.get("seeds", [0, 1, 2]))
    cells = [(s.get("label") or s.get("name"), float(f)) for s in specs for f in grid.get("fractions") or []
             if s.get("fractions") is None or f in s["fractions"]]
    if grid.get("full_reference", True) and FULL_KEY not in keys:
        cells.append((FULL_KEY, 1.0))
    n_full = grid.get("full_reference_seeds")
    full_seeds = set(seeds[:n_full] if n_full is not None else seeds)
    return {(k, f, int(sd)) for k, f in cells for sd in seeds if k != FULL_KEY or sd in full_seeds}


def _same_value(name: str, old: Any, new: Any, old_cfg: Mapping[str, Any], new_cfg: Mapping[str, Any]) -> bool:
    if _canon(old) == _canon(new):
        return True
    if name == "trainer.precision":
        # 'auto' and what it resolves to on this machine train alike.
        from dataselect.core.models import pick_device
        from dataselect.train.precision import resolve_precision

        try:
            got = [resolve_precision(str(v), pick_device(str((c.get("trainer") or {}).get("device", "auto"))))
                   for v, c in ((old, old_cfg), (new, new_cfg))]
        except (UserError, ValueError):
            return False
        return got[0] == got[1]
    return False


def _show(value: Any) -> str:
    text = _canon(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class Difference:
    """How the current run differs from the stored study."""

    fields: list[str]
    """``name (old -> new)`` of every changed result field (a selector removed included)."""
    removed: list[str]
    """Trial names of the stored grid that the current grid lacks."""
    added: int
    """Trials the current grid adds."""

    @property
    def grid_only(self) -> bool:
        return not self.fields and not self.removed


def compare(stored: Identity, current: Identity) -> Difference:
    """Changed fields and the grids' difference (selectors only in ``current`` are additions)."""
    from dataselect.sweep.trial import trial_name_for

    old, new = result_fields(stored), result_fields(current)
    changed = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            if name.startswith(("selectors[", "code.selectors[")):
                continue  # a selector the grid adds
            if name == "data.fingerprint":
                continue  # not known for the stored study
        elif name not in new:
            if name == "data.fingerprint" or name.startswith("code.selectors["):
                continue  # not known now / said by the selector's own line
            changed.append(f"{name} (removed)" if name.startswith("selectors[") else
                           f"{name} ({_show(old[name])} -> absent)")
        elif not _same_value(name, old[name], new[name], stored.config, current.config):
            changed.append(f"{name} ({_show(old[name])} -> {_show(new[name])})")
    old_runs, new_runs = trial_runs(stored.config), trial_runs(current.config)
    removed = sorted(trial_name_for(*r) for r in old_runs - new_runs)
    return Difference(changed, removed, len(new_runs - old_runs))


def _ways_on(name: str) -> str:
    return (f"resume with the config study '{name}' ran with, or start it afresh under this one: rerun "
            "without --resume (a new Tune experiment; every finished trial whose cached result still "
            "matches its key is reused) or give the study a new name")


def _named(items: list[str]) -> str:
    more = f" and {len(items) - _MORE} more" if len(items) > _MORE else ""
    return ", ".join(items[:_MORE]) + more


def check_config(cfg: StudyConfig, current: Identity, stored: Identity | None) -> bool:
    """Refuse a resume whose config, data or code differ from the stored study's.

    Returns True when the grid only grew (the caller starts a new Tune
    experiment over it), False when it is the same study; raises
    :class:`ResumeError` otherwise. No stored identity: nothing to compare (False).
    """
    if stored is None:
        return False
    diff = compare(stored, current)
    problems = []
    if diff.fields:
        problems.append(f"results depend on fields that changed: {_named(diff.fields)}")
    if diff.removed:
        problems.append(f"the grid no longer holds {len(diff.removed)} of its trials ({_named(diff.removed)})")
    if problems:
        raise ResumeError(f"--resume: the config is not the one study '{cfg.name}' ran with "
                          f"({cfg.study_dir}): {'; '.join(problems)}; its finished results belong to "
                          f"the old one: {_ways_on(cfg.name)}")
    if diff.added:
        log.warning("--resume: the grid adds %d trial(s) to study '%s' and changes nothing else: starting "
                    "a new Tune experiment over the whole grid; finished trials are reused from %s",
                    diff.added, cfg.name, cfg.study_dir / "trials")
        return True
    return False


def check_inputs(cfg: StudyConfig, stored: Identity | None, key: str) -> None:
    """Refuse a resume whose rows or feature table differ by content (before ``inputs/`` is rewritten)."""
    if stored is None or stored.inputs is None or stored.inputs == key:
        return
    raise ResumeError(f"--resume: the data or features of study '{cfg.name}' differ by content from those "
                      f"it ran with (inputs key {stored.inputs} -> {key}: a model's files, the feature "
                      f"settings or device, or the data changed); {_ways_on(cfg.name)}")


def check_selections(cfg: StudyConfig, stored: Identity | None, manifests: Mapping[str, str]) -> None:
    """Refuse a resume whose selections of the old grid's cells have other keys."""
    if stored is None:
        return
    changed = sorted(cell for cell, name in manifests.items()
                     if stored.manifests.get(cell) not in (None, name))
    if changed:
        shown = [c.replace("|", " at ", 1).replace("|", " seed ") for c in changed]
        raise ResumeError(f"--resume: {len(changed)} selection(s) of study '{cfg.name}' now have other "
                          f"manifest keys than it ran with ({_named(shown)}: selector code, resolved "
                          f"parameters or partitions changed); {_ways_on(cfg.name)}")


# --------------------------------------------------------------------------- storage
def manifest_names(selections: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Cell id -> manifest file name of the selections that have one."""
    return {cell: Path(s["path"]).name for cell, s in selections.items() if s.get("path")}


def write_identity(study: Path, ident: Identity) -> None:
    atomic_write_text(study / IDENTITY_FILE, json.dumps(ident.to_json(), indent=1, sort_keys=True))


def read_identity(study: Path) -> Identity | None:
    """The stored study's identity: ``identity.json``, else what an older study left
    (``study.json``, ``inputs/inputs.json``), else None (nothing ran here yet)."""
    from dataselect.sweep.inputs import stored_inputs_key
    from dataselect.sweep.trial import cell_id

    path = study / IDENTITY_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Identity(config=raw["config"], data=raw.get("data"), code=raw.get("code"),
                        inputs=raw.get("inputs"), manifests=dict(raw.get("manifests") or {}))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ResumeError(f"--resume: {path} is unreadable ({type(err).__name__}: {err}); it says which "
                          "config the study ran with: restore it, or rerun without --resume") from err
    try:
        meta = json.loads((study / "study.json").read_text(encoding="utf-8"))
        config = meta["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    manifests = {}
    for sel in meta.get("selections") or []:
        if isinstance(sel, Mapping) and sel.get("path"):
            manifests[cell_id(sel["selector"], sel["fraction"], sel["seed"])] = Path(sel["path"]).name
    return Identity(config=config, data=(meta.get("dataset") or {}).get("fingerprint"),
                    inputs=stored_inputs_key(study), manifests=manifests)


# --------------------------------------------------------------------------- Tune state
def check_tune_state(exp_dir: Path) -> None:
    """Refuse to unpickle a Tune state that another user could have written.

    The experiment folder, every file in it and every ``*.pkl`` of its trial
    folders must be owned by the running user and not writable by others
    (symbolic links are judged by both the link and its target).
    """
    if not exp_dir.is_dir():
        return
    uid = os.getuid()
    paths = [exp_dir, *sorted(exp_dir.iterdir())]
    paths += [p for d in paths[1:] if d.is_dir() and not d.is_symlink() for p in sorted(d.glob("*.pkl"))]
    for p in paths:
        if p.is_dir() and p != exp_dir and not p.is_symlink():
            continue
        for st in (os.lstat(p), os.stat(p)) if p.exists() else (os.lstat(p),):
            if st.st_uid != uid:
                raise ResumeError(
                    f"--resume: {p} is owned by uid {st.st_uid}, not by you (uid {uid}); Tune unpickles "
                    "its experiment state on restore, which can run code, so it is not loaded: check "
                    "who wrote it, or rerun without --resume (finished trials are reused from trials/)")
            if st.st_mode & 0o002 and not stat.S_ISLNK(st.st_mode):  # a link's own mode means nothing
                raise ResumeError(
                    f"--resume: {p} is writable by every user (mode {st.st_mode & 0o7777:o}); Tune "
                    "unpickles its experiment state on restore, which can run code, so it is not loaded: "
                    "remove the write permission for others (chmod o-w), or rerun without --resume")
