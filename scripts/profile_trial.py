"""Where a 1 % fine-tune trial's seconds go, phase by phase, and what each cheap change buys.

Replays :func:`dataselect.train.finetune` on the leak-free SST-2 setup of
``experiments/target.yaml`` (272 random pool rows, 150 steps of 16, the
3,872-row eval set) with a timer around every phase: tokenise, model load,
forward, backward, gradient clipping, optimizer step, eval forward, writing
predictions. Then times the trainer itself under each variant against the
default in the same run, interleaved (A B A B ...), so drift hits both:

    python scripts/profile_trial.py --threads 2 --repeats 3 --out /tmp/profile.json

Variants (:data:`VARIANTS`; accuracy and per-row agreement with today's printed beside the
times): today's per-tensor AdamW loop, ``adamw: foreach`` (bit for bit the same), ``adamw:
fused``. Eval batch size was tried too (32-512 rows per length-sorted batch: within noise, 512
slower) and is left at 128: eval is 72 % GEMMs, near this CPU's fp32 rate already.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np


def _setup(rows: int, seed: int):
    from dataselect.core.data import load_dataset
    from dataselect.sweep.study import load_study

    cfg = load_study(Path(__file__).resolve().parents[1] / "experiments" / "target.yaml")
    ds = load_dataset(cfg.dataset)
    pool = ds.train.to_pandas() if hasattr(ds.train, "to_pandas") else ds.train
    evalf = ds.eval.to_pandas() if hasattr(ds.eval, "to_pandas") else ds.eval
    rng = np.random.default_rng(seed)
    sub = pool.iloc[rng.choice(len(pool), rows, replace=False)].reset_index(drop=True)
    return cfg.trainer, sub, evalf.reset_index(drop=True)


def phases(tcfg, train, evalf, seed: int) -> dict[str, float]:
    """The trainer's loop with a timer around each phase (same calls as finetune)."""
    import torch
    import torch.nn.functional as F

    from dataselect.core.models import load_classifier, load_tokenizer
    from dataselect.train.trainer import (
        _collate,
        _lr_lambda,
        _tokenize,
        predict,
        seed_everything,
        train_batches,
    )

    t: dict[str, float] = {}

    def tick(name, t0):
        t[name] = t.get(name, 0.0) + time.perf_counter() - t0
        return time.perf_counter()

    t0 = time.perf_counter()
    seed_everything(seed)
    tok = load_tokenizer(tcfg.model)
    model = load_classifier(tcfg.model, 2, "cpu")
    t0 = tick("model load", t0)
    ids = _tokenize(tok, train["text"].tolist(), tcfg.max_length)
    t0 = tick("tokenise train", t0)
    lengths = np.array([len(x) for x in ids])
    labels = torch.tensor(train["label"].to_numpy(np.int64))
    total = max(math.ceil(tcfg.epochs * math.ceil(len(ids) / tcfg.batch_size)), tcfg.min_steps)
    no_decay = ("bias", "LayerNorm.weight", "layernorm.weight", "norm.weight")
    groups = [{"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
               "weight_decay": tcfg.weight_decay},
              {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=tcfg.learning_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(int(tcfg.warmup_ratio * total), total))
    rng = np.random.default_rng(seed)
    model.train()
    step, tokens = 0, 0
    t0 = time.perf_counter()
    while step < total:
        for rows in train_batches(lengths, tcfg.batch_size, rng):
            if step >= total:
                break
            input_ids, mask = _collate(ids, rows, tok.pad_token_id)
            tokens += int(mask.sum())
            t0 = tick("collate", t0)
            logits = model(input_ids=input_ids, attention_mask=mask).logits
            loss = F.cross_entropy(logits.float(), labels[rows])
            t0 = tick("forward", t0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t0 = tick("backward", t0)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            t0 = tick("clip grad norm", t0)
            opt.step()
            sched.step()
            t0 = tick("optimizer step", t0)
            step += 1
    t["train tokens"] = tokens
    t0 = time.perf_counter()
    ev_ids = _tokenize(tok, evalf["text"].tolist(), tcfg.max_length)
    t["eval tokens"] = int(sum(len(x) for x in ev_ids))
    t0 = tick("tokenise eval", t0)
    predict(model, tok, evalf["text"].tolist(), batch_size=tcfg.eval_batch_size, max_length=tcfg.max_length,
            device="cpu", with_proba=True)
    t0 = tick("eval (tokenise + forward)", t0)
    return t


VARIANTS = ("today", "foreach", "fused")
"""``today``: the per-tensor AdamW loop the trainer ran until trainer.adamw existed (torch's
CPU default, forced here); ``foreach``: bit for bit the same; ``fused``: the new default."""


def whole_trial(tcfg, train, evalf, seed: int, variant: str) -> dict[str, float]:
    """One :func:`~dataselect.train.finetune` call (model load, train, eval) under ``variant``."""
    import contextlib
    from unittest import mock

    import torch

    from dataselect.train import finetune

    cfg = tcfg.model_copy(update={"adamw": "foreach" if variant == "today" else variant, "precision": "fp32",
                                  "device": "cpu"})
    real = torch.optim.AdamW
    patch = (mock.patch("torch.optim.AdamW", lambda *a, **k: real(*a, **{**k, "foreach": False}))
             if variant == "today" else contextlib.nullcontext())
    t0 = time.perf_counter()
    with patch:
        r = finetune(train, evalf, cfg, num_labels=2, seed=seed, progress=False)
    return {"wall_s": time.perf_counter() - t0, "train_s": r["train_seconds"], "eval_s": r["eval_seconds"],
            "accuracy": r["accuracy"], "pred": r["eval_predictions"].pred}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=272)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    tcfg, train, evalf = _setup(args.rows, args.seed)
    load_before = os.getloadavg()[0]
    prof = [phases(tcfg, train, evalf, args.seed) for _ in range(args.repeats)]
    med = {k: float(np.median([p[k] for p in prof])) for k in prof[0]}
    whole: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):  # interleaved: drift hits every variant alike
        for v in VARIANTS:
            whole[v].append(whole_trial(tcfg, train, evalf, args.seed, v))
    base = whole["today"][0]["pred"]
    summary = {v: {"wall_s_median": float(np.median([r["wall_s"] for r in rs])),
                   "train_s_median": float(np.median([r["train_s"] for r in rs])),
                   "eval_s_median": float(np.median([r["eval_s"] for r in rs])),
                   "accuracy": rs[0]["accuracy"],
                   "eval_rows_agreeing_with_today": float((rs[0]["pred"] == base).mean())}
               for v, rs in whole.items()}
    for v in VARIANTS:
        summary[v]["speedup_vs_today"] = summary["today"]["wall_s_median"] / summary[v]["wall_s_median"]
    out = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
           "load_before": load_before, "load_after": os.getloadavg()[0], "phases_median_s": med,
           "whole_trial": summary}
    print(json.dumps(out, indent=1))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
