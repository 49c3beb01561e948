"""Shared pieces of the feature families: the family spec, batching, devices.

Kept free of torch/ray imports at module level: a cache hit must not pay for
them (``import torch`` alone takes ~2 s on the reference machine).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FamilySpec:
    """One feature family, fully resolved for one config and device.

    ``udf(**udf_kwargs)`` builds the Ray Data callable class (model loaded in
    ``__init__``); its ``__call__`` maps a dict-of-numpy batch with ``id`` and
    ``text`` to ``id`` plus :attr:`columns`. :attr:`key_settings` holds every
    resolved setting that can change the output (defaults included, per the
    STYLE.md caching rule) and goes into the cache key with the model
    fingerprint and :func:`code_version` of :attr:`udf`.
    """

    name: str
    udf: type
    udf_kwargs: dict[str, Any]
    key_settings: dict[str, Any]
    model_ref: str | None
    columns: tuple[str, ...]
    uses_model: bool
    batch_rows: int
    """Rows per Ray Data batch (the UDF length-sorts and micro-batches inside)."""
    check_values: Callable[[dict[str, np.ndarray]], str | None] | None = field(default=None, compare=False)
    """Returns a problem description when a shard's values are impossible (e.g. NaN)."""


def code_version(obj: Any) -> str:
    """``module.qualname@VERSION``: bump ``VERSION`` to invalidate cached outputs."""
    return f"{obj.__module__}.{obj.__qualname__}@{obj.VERSION}"


def no_nan(columns: Sequence[str]) -> Callable[[dict[str, np.ndarray]], str | None]:
    """A value check that rejects NaN/inf in ``columns``."""

    def check(values: dict[str, np.ndarray]) -> str | None:
        for c in columns:
            v = np.asarray(values[c])
            if v.dtype.kind == "f" and not np.isfinite(v).all():
                return f"non-finite values in {c!r}"
        return None

    return check


def length_batches(lengths: np.ndarray, batch_size: int, *, sort: bool = True) -> list[np.ndarray]:
    """Split positions into batches, by ascending length when ``sort``.

    Sorting bounds each batch's padding by the length spread inside it; on
    SST-2 (1-52 words) it removes most of the padding an arrival-order batch
    carries (see :func:`padding_stats`).
    """
    order = np.argsort(lengths, kind="stable") if sort else np.arange(len(lengths))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def padding_stats(lengths: np.ndarray, batch_size: int, *, sort: bool) -> dict[str, float]:
    """Real and padded token counts for a batching plan (``padded`` includes real)."""
    lengths = np.asarray(lengths)
    padded = sum(int(lengths[b].max()) * len(b) for b in length_batches(lengths, batch_size, sort=sort) if len(b))
    real = int(lengths.sum())
    return {"real_tokens": real, "padded_tokens": padded, "pad_fraction": 1 - real / max(padded, 1)}


def cuda_guess() -> bool:
    """Whether a CUDA GPU is probably visible, without importing torch.

    Used only to order cache lookups for ``device="auto"``; computing always
    resolves the device with torch (:func:`dataselect.core.models.pick_device`).
    """
    if "torch" in sys.modules:
        return bool(sys.modules["torch"].cuda.is_available())
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


def torch_dtype_name(device: str) -> str:
    """Inference precision by device: bf16 on GPU (halves memory, tensor cores), fp32 on CPU."""
    return "bfloat16" if device == "cuda" else "float32"


def setup_torch(n_threads: int | None) -> None:
    """Cap intra-op threads: actors sharing a machine must not oversubscribe cores."""
    import torch

    if n_threads:
        torch.set_num_threads(int(n_threads))


def to_torch_dtype(name: str) -> Any:
    import torch

    return {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}[name]


def text_list(batch: dict[str, np.ndarray]) -> list[str]:
    """Texts of a numpy batch as Python strings (Ray may hand object or unicode arrays)."""
    return [str(t) for t in batch["text"]]


class ModelBatch:
    """Ray Data UDF base: tokenizer and model loaded once per actor, ``id`` carried through.

    Subclasses name their loader in :mod:`dataselect.core.models` (``loader``) and
    implement :meth:`score` (texts in, per-row columns out).
    """

    VERSION = 1
    loader: str = ""

    def __init__(
        self, *, model: str, max_length: int = 128, batch_size: int = 16, device: str = "cpu",
        dtype: str = "float32", n_threads: int | None = None,
    ) -> None:
        from dataselect.core import models

        setup_torch(n_threads)
        self.tokenizer = models.load_tokenizer(model)
        self.model = getattr(models, self.loader)(model, device, to_torch_dtype(dtype))
        self.max_length, self.batch_size = max_length, batch_size

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Carry ids through: Ray Data may reorder rows.
        return {"id": np.asarray(batch["id"], dtype=np.int64), **self.score(text_list(batch))}
