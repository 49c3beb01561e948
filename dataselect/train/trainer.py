"""Turn a selected subset into a classifier and score it on the eval split.

Two trainers, one result shape (see :data:`dataselect.train.metrics.METRICS`):

* :func:`finetune` fine-tunes ``AutoModelForSequenceClassification``.
  It is a plain torch loop rather than HF ``Trainer``: every source of
  randomness (head init, dropout, data order) is seeded from one ``seed``
  and visible here; batches are length-bucketed (Trainer's
  ``group_by_length`` sorts whole mega-batches but adds accelerate's
  device/worker machinery we do not need inside a Ray trial); and a run
  is one function call, cheap to start 100s of times in a sweep.
* :func:`probe` fits a scikit-learn head on cached frozen embeddings: the
  CPU proxy that lets a whole grid run in minutes.

Class imbalance: a small or skewed subset may miss a class. Training goes
on (the head still has ``num_labels`` outputs), the loss is *not*
re-weighted — the study measures a subset as selected, and re-weighting
would hide a selector's class skew — and the result lists
``missing_classes`` and ``class_counts`` so the report can show it.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dataselect.core.config import TrainerConfig
from dataselect.core.errors import DataError
from dataselect.train.board import Board
from dataselect.train.metrics import METRICS, classification_metrics, subset_summary
from dataselect.train.precision import fast_bf16, resolve_precision

log = logging.getLogger(__name__)

CODE_VERSION = 1
"""Version of the fine-tune's behaviour: bump it with any change that alters what
:func:`finetune` returns for the same subset, config and seed. It enters every
fine-tune trial's cache key (only when it is not 1, so results of version 1 keep
their keys): results of older code then train again instead of being reused."""

_BUCKET_BATCHES = 50
"""Batches per bucket: rows are sorted by length inside windows of this many
batches, so padding drops while batch order stays random across windows."""


# --------------------------------------------------------------------------- helpers
def _check_frame(df: pd.DataFrame, name: str, num_labels: int) -> None:
    missing = {"text", "label"} - set(df.columns)
    if missing:
        raise DataError(f"{name}: missing columns {sorted(missing)}; has {list(df.columns)}")
    if len(df) == 0:
        raise DataError(f"{name}: has no rows")
    labels = df["label"].to_numpy()
    if labels.min() < 0 or labels.max() >= num_labels:
        raise DataError(f"{name}.label: must be in [0, {num_labels - 1}]; got [{labels.min()}, {labels.max()}]")


def seed_everything(seed: int) -> None:
    """Seed python, numpy's global RNG and torch (CPU and CUDA).

    Our own code passes ``np.random.default_rng(seed)`` down; the global
    seeds are for third-party code (dropout, head init in transformers).
    """
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def train_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, *, bucket: bool = True
) -> list[np.ndarray]:
    """One epoch of training batches (row positions), shuffled.

    ``bucket=True`` sorts rows by token length inside windows of
    ``_BUCKET_BATCHES`` batches and then shuffles the batch order: far less
    padding (SST-2 train phrases run 1-52 words) at nearly the randomness of
    a plain shuffle. ``bucket=False`` is a plain shuffle (the benchmark baseline).
    """
    perm = rng.permutation(len(lengths))
    if not bucket:
        return [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]
    window = batch_size * _BUCKET_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, len(perm), window):
        chunk = perm[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def _collate(ids: Sequence[Sequence[int]], rows: np.ndarray, pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(ids[i]) for i in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, i in enumerate(rows):
        seq = ids[i]
        input_ids[j, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[j, : len(seq)] = 1
    return input_ids, mask


def _tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    return enc["input_ids"]


PREDICTIONS_KEY = "eval_predictions"
"""Result key of the trainers' per-row eval predictions (an :class:`EvalPredictions`)."""

VALIDATION_KEY = "validation_predictions"
"""Result key of the per-row predictions on the validation holdout (given one)."""

VALIDATION_PREFIX = "validation_"
"""Prefix of the metrics scored on the validation holdout (``validation_accuracy`` ...)."""


@dataclass(frozen=True)
class EvalPredictions:
    """Per-row eval output of one trained classifier, in eval-row order.

    Kept so the report can pair eval rows across arms (seed × row variance) and compare
    arms row by row; aggregate metrics alone cannot.
    """

    pred: np.ndarray
    """(m,) int64 predicted class ids."""
    proba: np.ndarray | None
    """(m, K) float32 class probabilities, or None when the head has none."""


def predict(
    model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int, max_length: int,
    device: str, bf16: bool = False, with_proba: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Predicted class ids (and with ``with_proba`` softmax probabilities), in input order.

    Eval batches are length-sorted (longest first, so an out-of-memory shows
    at once): each batch pads only to its neighbours' length.
    """
    import torch

    ids = _tokenize(tokenizer, texts, max_length)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(-lengths, kind="stable")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = np.empty(len(ids), dtype=np.int64)
    probs: np.ndarray | None = None
    model.eval()
    with torch.inference_mode(), _autocast(device, bf16):
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            input_ids, mask = _collate(ids, rows, pad_id)
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float()
            out[rows] = logits.argmax(-1).cpu().numpy()
            if with_proba:
                if probs is None:
                    probs = np.empty((len(ids), logits.shape[-1]), dtype=np.float32)
                probs[rows] = torch.softmax(logits, -1).cpu().numpy()
    if with_proba:
        return out, probs if probs is not None else np.empty((0, 0), np.float32)
    return out


def _autocast(device: str, bf16: bool) -> Any:
    import contextlib

    import torch

    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)


def _lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


# --------------------------------------------------------------------------- finetune
def finetune(
    train_df: pd.DataFrame,
    eval_df: pd.DataFrame,
    cfg: TrainerConfig,
    *,
    num_labels: int,
    seed: int,
    logdir: str | Path | None = None,
    progress: bool = True,
    hparams: Mapping[str, Any] | None = None,
    bucket: bool = True,
    save_dir: str | Path | None = None,
    label_names: Sequence[str] | None = None,
    validation_df: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Fine-tune ``cfg.model`` on ``train_df`` rows and score it on ``eval_df``.

    Parameters
    ----------
    train_df, eval_df : DataFrame with ``text`` (str) and ``label`` (int in ``0..num_labels-1``)
    cfg : TrainerConfig
        ``model``, ``learning_rate``, ``weight_decay``, ``epochs`` (may be
        fractional; at least ``min_steps`` steps are taken), ``batch_size``, ``eval_batch_size``, ``max_length``,
        ``warmup_ratio`` (linear warm-up, then linear decay), ``device``, ``precision``
        (:func:`~dataselect.train.precision.resolve_precision`).
    num_labels : int
        Size of the classifier head (K), also when a class is absent from ``train_df``.
    seed : int
        Seeds head init, dropout and data order.
    logdir : path, optional
        TensorBoard run directory: ``train/loss`` and ``train/lr`` per step,
        ``eval/*`` metrics and an HParams record at the end.
    hparams : mapping, optional
        Extra HParams entries (selector, fraction...) for TensorBoard.
    bucket : bool, default=True
        Length-bucketed training batches (see :func:`train_batches`).
    save_dir : path, optional
        Save the fine-tuned classifier and its tokenizer here
        (``save_pretrained``), loadable by ``dataselect.core.models.load_classifier``.
    label_names : sequence of str, optional
        Class names in label order, for TensorBoard (default: the digits).
    validation_df : DataFrame, optional
        The validation holdout (``text``, ``label``): scored too, after the eval
        set and apart from it (:func:`add_validation`); training does not see it.

    Returns
    -------
    dict
        ``accuracy``, ``macro_f1``, ``precision``, ``recall``, ``n_train``,
        ``class_counts``, ``missing_classes``, ``train_loss`` (mean over the
        last epoch), ``steps``, ``train_seconds``, ``eval_seconds``,
        ``train_examples_per_second``, ``device``, ``compute_dtype`` (the precision used: ``fp32`` / ``bf16``; not ``precision``, a metric)...
    """
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from dataselect.core.models import load_classifier, load_tokenizer, pick_device

    _check_frame(train_df, "train_df", num_labels)
    _check_frame(eval_df, "eval_df", num_labels)
    device = pick_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    bf16 = precision == "bf16"
    if bf16 and not fast_bf16(device)[0]:
        log.warning("trainer.precision: bf16 on %s, which has no fast bf16 (%s): expect it to be far "
                    "slower than fp32", device, fast_bf16(device)[1])
    summary = subset_summary(train_df["label"].to_numpy(), num_labels)
    if summary["missing_classes"]:
        log.warning("training subset has no rows of classes %s (counts %s); training anyway",
                    summary["missing_classes"], summary["class_counts"])

    seed_everything(seed)
    tokenizer = load_tokenizer(cfg.model)
    model = load_classifier(cfg.model, num_labels, device)
    ids = _tokenize(tokenizer, train_df["text"].tolist(), cfg.max_length)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    labels = torch.tensor(train_df["label"].to_numpy(np.int64))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    steps_per_epoch = math.ceil(len(ids) / cfg.batch_size)
    total = max(1, math.ceil(cfg.epochs * steps_per_epoch), cfg.min_steps)
    warmup = int(cfg.warmup_ratio * total)
    no_decay = ("bias", "LayerNorm.weight", "layernorm.weight", "norm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
         "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)],
         "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=cfg.learning_rate,
                            **({"fused": True} if cfg.adamw == "fused" else {"foreach": True}))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(warmup, total))
    board = Board(logdir)
    rng = np.random.default_rng(seed)

    model.train()
    step, seen, epoch_losses = 0, 0, []
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc="finetune", disable=not progress, leave=False)
    pin = device.startswith("cuda")
    while step < total:
        # Losses stay on the device until the epoch ends: reading one per step
        # (float(loss)) would make the host wait for the GPU every step, so it
        # could never queue the next step's kernels while this one runs.
        pending: list[tuple[int, Any, float]] = []
        for rows in train_batches(lengths, cfg.batch_size, rng, bucket=bucket):
            if step >= total:
                break
            input_ids, mask = _collate(ids, rows, pad_id)
            if pin:
                input_ids, mask = input_ids.pin_memory(), mask.pin_memory()
            with _autocast(device, bf16):
                logits = model(input_ids=input_ids.to(device, non_blocking=pin),
                               attention_mask=mask.to(device, non_blocking=pin)).logits
            loss = F.cross_entropy(logits.float(), labels[rows].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            pending.append((step, loss.detach(), sched.get_last_lr()[0]))
            step += 1
            seen += len(rows)
            bar.update(1)
        epoch_losses = torch.stack([p[1] for p in pending]).tolist() if pending else []
        for (i, _, lr), value in zip(pending, epoch_losses, strict=True):
            board.scalar("train/loss", value, i)
            board.scalar("train/lr", lr, i)
    bar.close()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    train_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    pred, proba = predict(model, tokenizer, eval_df["text"].tolist(), batch_size=cfg.eval_batch_size,
                          max_length=cfg.max_length, device=device, bf16=bf16, with_proba=True)
    eval_s = time.perf_counter() - t1
    metrics = classification_metrics(eval_df["label"].to_numpy(np.int64), pred, num_labels)
    result = training_result(
        "finetune", cfg.model, seed, metrics, summary, pred, num_labels, proba=proba,
        train_loss=float(np.mean(epoch_losses)) if epoch_losses else float("nan"), steps=step,
        train_seconds=train_s, eval_seconds=eval_s,
        train_examples_per_second=seen / train_s if train_s > 0 else float("nan"),
        device=device, bf16=bf16, compute_dtype=precision,
    )
    if validation_df is not None:
        _check_frame(validation_df, "validation_df", num_labels)
        vpred, vproba = predict(model, tokenizer, validation_df["text"].tolist(), batch_size=cfg.eval_batch_size,
                                max_length=cfg.max_length, device=device, bf16=bf16, with_proba=True)
        add_validation(result, validation_df["label"].to_numpy(np.int64), vpred, vproba, num_labels)
    board.finish(hparams_record(cfg, seed, summary["n_train"], hparams), metrics, step,
                 summary["class_counts"], label_names)
    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(save_dir)
        tokenizer.save_pretrained(save_dir)
        result["saved_to"] = str(save_dir)
    log.info("finetune: n_train=%d acc=%.4f macro_f1=%.4f (%.1fs, %.1f ex/s)", summary["n_train"],
             metrics["accuracy"], metrics["macro_f1"], train_s, result["train_examples_per_second"])
    del model, opt
    return result


def training_result(mode: str, model: str, seed: int, metrics: dict[str, Any], summary: dict[str, Any],
            pred: np.ndarray, num_labels: int, *, proba: np.ndarray | None, **extra: Any) -> dict[str, Any]:
    """The result dict both trainers return: metrics, subset summary, predictions, timings."""
    return {"mode": mode, "model": model, "seed": seed, **metrics, **summary, "n_eval": len(pred),
            "pred_counts": np.bincount(pred, minlength=num_labels).tolist(), **extra,
            PREDICTIONS_KEY: EvalPredictions(pred, proba)}


def add_validation(result: dict[str, Any], labels: np.ndarray, pred: np.ndarray, proba: np.ndarray | None,
                   num_labels: int) -> None:
    """Put the validation holdout's metrics (``validation_<metric>``), row count and per-row
    predictions (:data:`VALIDATION_KEY`) into a trainer's ``result``; the eval metrics stay
    the eval set's alone, so a study can choose among arms without looking at them."""
    metrics = classification_metrics(np.asarray(labels, np.int64), np.asarray(pred, np.int64), num_labels)
    result.update({VALIDATION_PREFIX + k: metrics[k] for k in METRICS}, n_validation=len(pred))
    result[VALIDATION_KEY] = EvalPredictions(np.asarray(pred, np.int64), proba)


def hparams_record(cfg: TrainerConfig, seed: int, n_train: int, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    hp: dict[str, Any] = {"mode": cfg.mode, "model": cfg.model, "seed": seed, "n_train": n_train}
    if cfg.mode == "finetune":
        hp.update(learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, epochs=cfg.epochs,
                  min_steps=cfg.min_steps,
                  batch_size=cfg.batch_size, max_length=cfg.max_length, warmup_ratio=cfg.warmup_ratio)
    else:
        hp.update(probe=cfg.probe, probe_c=cfg.probe_c)
    hp.update(extra or {})
    return hp
