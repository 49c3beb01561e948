"""Fine-tuning throughput of the sweep's trainer, with its baseline in the same run.

Measures ``dataselect.train.finetune`` (examples/second over the training
loop, model load and eval excluded) on real SST-2 train rows, for
length-bucketed batches (the default) against plain shuffled batches (the
baseline), interleaved and repeated so drift on a shared machine hits both
alike. Also times eval (length-sorted) and a logistic-regression probe on
the same rows, for the "probe is the cheap proxy" claim.

    python scripts/bench_train.py --device cpu --rows 512 --repeats 2
    python scripts/bench_train.py --device cuda --rows 4096 --batch-size 32

On a machine without the SST-2 copy or the MiniLM weights (a GPU box that
receives only the repository), ``--lengths`` replays SST-2's token-length
profile (a ``.npy`` of token counts written by ``--save-lengths``) with
placeholder words, and ``--random-init-from`` builds the same architecture
from a config folder with random weights: throughput depends only on tensor
shapes, so the ex/s figures hold; accuracies are then meaningless (reported as null).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger("bench_train")
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst2"


def _read(path: Path, n: int, seed: int) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False)
    df = df.rename(columns={"sentence": "text"})
    df.insert(0, "id", np.arange(len(df)))
    # A random sample, not the first rows: GLUE's row order is not length-neutral.
    return df.sample(n=min(n, len(df)), random_state=seed).reset_index(drop=True)


def _synthetic(lengths: np.ndarray, n: int, seed: int) -> pd.DataFrame:
    """Rows whose BERT token counts replay ``lengths`` ('good' is one WordPiece; +2 for [CLS]/[SEP])."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(lengths, size=n, replace=True)
    texts = [" ".join(["good"] * max(1, int(k) - 2)) for k in pick]
    return pd.DataFrame({"id": np.arange(n), "text": texts, "label": rng.integers(0, 2, n)})


def _random_init(config_dir: Path, out: Path) -> str:
    """Save a randomly initialised classifier of ``config_dir``'s architecture (+ its tokenizer)."""
    import shutil

    from transformers import AutoConfig, AutoModelForSequenceClassification

    cfg = AutoConfig.from_pretrained(config_dir, num_labels=2)
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(out)
    for f in config_dir.iterdir():
        if f.name != "config.json" and f.is_file():
            shutil.copy(f, out / f.name)
    return str(out)


def _machine(device: str) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    desc = f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, threads {torch.get_num_threads()}"
    if device == "cuda":
        desc += f", GPU {torch.cuda.get_device_name(0)}"
    return desc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--rows", type=int, default=512, help="training rows per run")
    ap.add_argument("--eval-rows", type=int, default=872, help="validation rows for the eval timing")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2, help="runs per variant (interleaved)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--json", type=Path, default=None, help="write all figures here too")
    ap.add_argument("--lengths", type=Path, default=None,
                    help="token-length profile (.npy) to replay instead of reading SST-2")
    ap.add_argument("--save-lengths", type=Path, default=None,
                    help="write the token lengths of --rows sampled SST-2 train rows and exit")
    ap.add_argument("--random-init-from", type=Path, default=None,
                    help="config+tokenizer folder: benchmark that architecture with random weights")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("dataselect.train", "transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import tempfile

    from dataselect.core.config import TrainerConfig
    from dataselect.core.models import load_encoder, load_tokenizer
    from dataselect.train import finetune, probe

    if args.save_lengths:
        tok = load_tokenizer(args.model)
        texts = _read(args.data / "train.tsv", args.rows, 0)["text"].tolist()
        np.save(args.save_lengths, np.array([len(x) for x in tok(texts)["input_ids"]], dtype=np.int16))
        return
    synthetic = args.lengths is not None
    if synthetic:
        prof = np.load(args.lengths)
        train, evalf = _synthetic(prof, args.rows, 0), _synthetic(prof, args.eval_rows, 1)
    else:
        train = _read(args.data / "train.tsv", args.rows, 0)
        evalf = _read(args.data / "validation.tsv", args.eval_rows, 0)
    if args.random_init_from is not None:
        args.model = _random_init(args.random_init_from, Path(tempfile.mkdtemp(prefix="bench-model-")))
    cfg = TrainerConfig(mode="finetune", model=args.model, learning_rate=5e-5, epochs=1.0,
                        batch_size=args.batch_size, eval_batch_size=128, max_length=args.max_length,
                        warmup_ratio=0.1, device=args.device)
    # Warm-up run (allocator, kernels, page cache) excluded from the figures.
    finetune(train.iloc[: args.batch_size * 2], evalf.iloc[:64], cfg, num_labels=2, seed=0, progress=False)

    runs: dict[str, list[dict]] = {"bucketed": [], "shuffled": []}
    for r in range(args.repeats):
        for name in ("shuffled", "bucketed"):
            res = finetune(train, evalf, cfg, num_labels=2, seed=r, progress=False, bucket=name == "bucketed")
            runs[name].append(res)
            log.info("%s run %d: %.1f ex/s train, eval %.1f rows/s, acc %.3f", name, r,
                     res["train_examples_per_second"], len(evalf) / res["eval_seconds"], res["accuracy"])

    # Probe on frozen mean-pooled embeddings of the same rows (embedding time reported apart).
    import torch

    tok, enc = load_tokenizer(args.model), load_encoder(args.model, device=args.device)
    t0 = time.perf_counter()
    embs = []
    with torch.inference_mode():
        for frame in (train, evalf):
            out = []
            texts = frame["text"].tolist()
            for i in range(0, len(texts), 128):
                b = tok(texts[i : i + 128], padding=True, truncation=True, max_length=args.max_length,
                        return_tensors="pt").to(args.device)
                h = enc(**b).last_hidden_state
                m = b["attention_mask"].unsqueeze(-1).to(h.dtype)
                out.append(((h * m).sum(1) / m.sum(1)).float().cpu().numpy())
            embs.append(np.concatenate(out))
    embed_s = time.perf_counter() - t0
    pr = probe(embs[0], train["label"].to_numpy(), embs[1], evalf["label"].to_numpy(),
               TrainerConfig(mode="probe", probe="logreg"), seed=0, num_labels=2)

    def med(name: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[name])

    figures = {
        "machine": _machine(args.device),
        "device": args.device,
        "bf16": runs["bucketed"][0]["bf16"],
        "rows": len(train),
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "repeats": args.repeats,
        "finetune_ex_per_s_shuffled": med("shuffled", "train_examples_per_second"),
        "finetune_ex_per_s_bucketed": med("bucketed", "train_examples_per_second"),
        "eval_rows_per_s": statistics.median(len(evalf) / x["eval_seconds"] for v in runs.values() for x in v),
        "data": "synthetic (SST-2 length profile)" if synthetic else "SST-2",
        "weights": "random init" if args.random_init_from else "pretrained",
        "accuracy_shuffled": None if synthetic else med("shuffled", "accuracy"),
        "accuracy_bucketed": None if synthetic else med("bucketed", "accuracy"),
        "embed_rows_per_s": (len(train) + len(evalf)) / embed_s,
        "probe_fit_seconds": pr["train_seconds"],
        "probe_accuracy": None if synthetic else pr["accuracy"],
    }
    figures["bucketed_speedup"] = figures["finetune_ex_per_s_bucketed"] / figures["finetune_ex_per_s_shuffled"]
    text = json.dumps(figures, indent=2)
    log.info("figures:\n%s", text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
