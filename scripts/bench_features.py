"""Benchmark the feature pipeline: Ray Data path vs a naive loop, and cache hits.

Measures, on a seeded sample of SST-2 train:

1. embeddings (MiniLM by default): a naive loop (batch 32, arrival order,
   ``padding=True`` per batch, one process) vs :func:`compute_features` through
   Ray Data (length-sorted, actor pool; timed end to end incl. actor start and
   model load, excl. ``ray.init``), plus the padding each plan carries;
2. causal-LM perplexity with a random Qwen3 (``--model-config``): the same pair;
3. the other families (text metrics, subword ratio) into the same store, then
   the cached rerun of all four: in this process and in a fresh one.

CPU (the 2-core reference machine)::

    .venv/bin/python scripts/bench_features.py --rows 8000 --json /tmp/bench_features.json

GPU (real-size Qwen3-1.7B config, random weights, all SST-2 train texts)::

    .venv/bin/python scripts/bench_features.py --device cuda --model-config qwen3-1.7b-random \\
        --rows all --naive-rows 2000 --families perplexity

Random weights give meaningless perplexities but the real model's cost.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_features")

# Qwen/Qwen3-1.7B-Base config.json (architecture fields only).
QWEN3_1_7B = dict(
    hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
    num_key_value_heads=8, head_dim=128, max_position_embeddings=32768, tie_word_embeddings=True,
    rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
)
VOCAB_QWEN3 = 151936


def load_sst2(data_dir: Path, rows: str, seed: int) -> pd.DataFrame:
    df = pd.read_csv(data_dir / "train.tsv", sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False,
                     dtype={"sentence": str})
    frame = pd.DataFrame({"id": np.arange(len(df), dtype=np.int64), "text": df["sentence"],
                          "label": df["label"].astype(np.int64)})
    if rows != "all":
        frame = frame.sample(n=min(int(rows), len(frame)), random_state=seed).reset_index(drop=True)
    return frame


def build_causal_lm(kind: str, texts: list[str], out: Path, device: str) -> str:
    """A random Qwen3 with a BPE tokenizer trained on ``texts``; returns its folder."""
    import torch

    from dataselect.standin import build_tiny_lm, train_tokenizer

    if kind == "tiny":
        tok = train_tokenizer(texts, vocab_size=4096, kind="qwen3")
        build_tiny_lm(tok, out, kind="qwen3", hidden_size=64, num_layers=2, num_heads=4, seed=0)
        return str(out)
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tok = train_tokenizer(texts, vocab_size=32000, kind="qwen3")
    cfg = Qwen3Config(vocab_size=VOCAB_QWEN3, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, **QWEN3_1_7B)
    t0 = time.perf_counter()
    with torch.device("cuda" if device == "cuda" else "cpu"):
        model = Qwen3ForCausalLM._from_config(cfg, attn_implementation="sdpa", dtype=torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    log.info("built random Qwen3-1.7B (%.2fB params) in %.0f s",
             sum(p.numel() for p in model.parameters()) / 1e9, time.perf_counter() - t0)
    del model
    return str(out)


def naive_embed(texts: list[str], ref: str, device: str, batch_size: int, max_length: int) -> float:
    """The loop everyone writes first: arrival order, pad each batch to its longest."""
    import torch

    from dataselect.models import load_encoder, load_tokenizer

    tok, model = load_tokenizer(ref), load_encoder(ref, device)
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                  return_tensors="pt").to(model.device)
        with torch.inference_mode():
            h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1)
        _ = ((h * m).sum(1) / m.sum(1)).cpu().numpy()
    return time.perf_counter() - t0


def naive_perplexity(texts: list[str], ref: str, device: str, batch_size: int, max_length: int) -> float:
    import torch
    import torch.nn.functional as F

    from dataselect.models import load_causal_lm, load_tokenizer

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tok, model = load_tokenizer(ref), load_causal_lm(ref, device, dtype)
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                  add_special_tokens=False, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            logits = model(**enc).logits
            nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), enc["input_ids"][:, 1:], reduction="none")
            _ = (nll * enc["attention_mask"][:, 1:]).sum(1).cpu()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def padding(texts: list[str], ref: str, batch_size: int, max_length: int) -> dict[str, Any]:
    from dataselect.features._common import padding_stats
    from dataselect.models import load_tokenizer

    lengths = np.array([len(x) for x in load_tokenizer(ref)(texts, truncation=True, max_length=max_length)["input_ids"]])
    naive = padding_stats(lengths, batch_size, sort=False)
    sorted_ = padding_stats(lengths, batch_size, sort=True)
    return {"naive_padded_tokens": naive["padded_tokens"], "sorted_padded_tokens": sorted_["padded_tokens"],
            "real_tokens": naive["real_tokens"], "naive_pad_fraction": round(naive["pad_fraction"], 3),
            "sorted_pad_fraction": round(sorted_["pad_fraction"], 4),
            "padded_tokens_saved": round(1 - sorted_["padded_tokens"] / naive["padded_tokens"], 3)}


def timed_compute(frame: pd.DataFrame, cfg: Any, store: Path, which: set[str], progress: bool,
                  engine: str = "ray") -> float:
    from dataselect.features import compute_features

    t0 = time.perf_counter()
    compute_features(frame, cfg, store, which=which, progress=progress, engine=engine)
    return time.perf_counter() - t0


_RERUN = """
import sys, time, pickle, logging
t0 = time.perf_counter()
from dataselect.config import FeaturesConfig
from dataselect.features import compute_features
frame, cfg, store, which = pickle.load(open(sys.argv[1], "rb"))
t1 = time.perf_counter()
import sys as _s
t = compute_features(frame, FeaturesConfig(**cfg), store, which=which, progress=False)
t2 = time.perf_counter()
print(f"{t2 - t1:.4f} {t2 - t0:.4f} {int('torch' in _s.modules)} {int('ray' in _s.modules)}")
"""


def fresh_process_rerun(frame: pd.DataFrame, cfg: Any, store: Path, which: set[str], work: Path) -> dict[str, Any]:
    import pickle

    arg = work / "rerun.pkl"
    arg.write_bytes(pickle.dumps((frame, cfg.model_dump(), str(store), which)))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _RERUN, str(arg)], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    call, after_start, torch_imported, ray_imported = r.stdout.split()
    return {"cached_call_s": float(call), "cached_imports_plus_call_s": float(after_start),
            "process_wall_s": round(wall, 3), "imported_torch": bool(int(torch_imported)),
            "imported_ray": bool(int(ray_imported))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "sst2")
    p.add_argument("--rows", default="8000", help="sample size from SST-2 train, or 'all'")
    p.add_argument("--naive-rows", type=int, default=None, help="rows for the naive loops (default: --rows)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--encoder", default="minilm")
    p.add_argument("--model-config", choices=["tiny", "qwen3-1.7b-random"], default="tiny",
                   help="causal LM for perplexity: tiny random Qwen3 (64 wide, 2 layers) or Qwen3-1.7B's shape")
    p.add_argument("--families", default="embedding,perplexity",
                   help="comma list of timed families (naive vs Ray)")
    p.add_argument("--batch-size", type=int, default=64, help="micro-batch of the Ray path (embeddings)")
    p.add_argument("--ppl-batch-size", type=int, default=32)
    p.add_argument("--naive-batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--num-actors", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("--engine", choices=["ray", "local"], default="ray",
                   help="'local' runs the same UDFs in-process (machines without Ray)")
    p.add_argument("--rerun-families", default="embedding,perplexity,text_metrics,subword_ratio",
                   help="families computed into the store, then timed as a cached rerun")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from dataselect.config import FeaturesConfig, RayConfig
    from dataselect.ray_runtime import init_ray

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-features-"))
    work.mkdir(parents=True, exist_ok=True)
    frame = load_sst2(args.data, args.rows, args.seed)
    texts = frame["text"].tolist()
    naive_texts = texts[: args.naive_rows or len(texts)]
    families = set(args.families.split(","))
    res: dict[str, Any] = {"engine": args.engine, "rows": len(frame), "naive_rows": len(naive_texts), "device": args.device,
                           "encoder": args.encoder, "model_config": args.model_config,
                           "date": time.strftime("%Y-%m-%d"), "argv": sys.argv[1:]}
    t0 = time.perf_counter()
    lm = build_causal_lm("tiny" if args.model_config == "tiny" else "1.7b", texts, work / "causal-lm", args.device)
    res["build_lm_s"] = round(time.perf_counter() - t0, 1)
    import torch

    n_cpus = len(os.sched_getaffinity(0))  # honours taskset, unlike os.cpu_count()
    torch.set_num_threads(n_cpus)  # the naive loop gets every core too
    res["cpus"] = n_cpus
    t0 = time.perf_counter()
    if args.engine == "ray":
        init_ray(RayConfig(temp_dir=str(work / "ray"), num_cpus=n_cpus))
    res["ray_init_s"] = round(time.perf_counter() - t0, 2)
    cfg = FeaturesConfig(encoder=args.encoder, perplexity_model=lm, batch_size=args.batch_size,
                         perplexity_batch_size=args.ppl_batch_size, max_length=args.max_length,
                         num_actors=args.num_actors, device=args.device, mlm_model=None)

    store = work / "store"
    if "embedding" in families:
        naive_s = naive_embed(naive_texts, args.encoder, args.device, args.naive_batch_size, args.max_length)
        ray_s = timed_compute(frame, cfg, store, {"embedding"}, args.progress, args.engine)
        res["embedding"] = {"naive_ex_s": round(len(naive_texts) / naive_s, 1),
                            "ray_ex_s": round(len(frame) / ray_s, 1), "ray_total_s": round(ray_s, 2),
                            **padding(texts, args.encoder, args.batch_size, args.max_length)}
        res["embedding"]["speedup"] = round(res["embedding"]["ray_ex_s"] / res["embedding"]["naive_ex_s"], 2)
        log.info("embedding: %s", res["embedding"])
    if "perplexity" in families:
        naive_s = naive_perplexity(naive_texts, lm, args.device, args.naive_batch_size, args.max_length)
        ray_s = timed_compute(frame, cfg, store, {"perplexity"}, args.progress, args.engine)
        res["perplexity"] = {"naive_ex_s": round(len(naive_texts) / naive_s, 1),
                             "ray_ex_s": round(len(frame) / ray_s, 1), "ray_total_s": round(ray_s, 2)}
        res["perplexity"]["speedup"] = round(res["perplexity"]["ray_ex_s"] / res["perplexity"]["naive_ex_s"], 2)
        log.info("perplexity: %s", res["perplexity"])

    # The remaining families into the same store, then the cached rerun of all.
    which = set(args.rerun_families.split(","))
    res["remaining_features_first_s"] = round(timed_compute(frame, cfg, store, which, args.progress, args.engine), 2)
    res["all_features_cached_in_process_s"] = round(timed_compute(frame, cfg, store, which, False, args.engine), 3)
    res["all_features_cached_fresh_process"] = fresh_process_rerun(frame, cfg, store, which, work)
    log.info("results: %s", json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
