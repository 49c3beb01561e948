"""GPU throughput of the trainer and the perplexity pass against the device's FLOP limit.

Issue 16, item 6. No hub here, so both default models are built with random
weights from their configs (the shapes are what cost FLOPs, not the values):

* trainer: ``dataselect.train.finetune`` on a ModernBERT-base-shaped
  classifier (Warner et al. 2024: 22 layers, d=768), bf16 autocast, batch 32
  and 128, every example ``--tokens`` long (no padding, so the FLOP count is
  exact);
* perplexity: ``dataselect.features.perplexity.lm_scores`` on a
  Qwen3-1.7B-shaped causal LM in bf16.

Each is run beside its **plain peer**: a torch loop over batches already on
the GPU (no tokenising, no host-side collation), the fastest loop a user
would write with the same model, measured in the same process. Model FLOPs
per example: training ``6 × N × T``, inference ``2 × N × T``, with N the
parameters that do matrix work per token (embedding tables excluded, the
tied LM head of Qwen3 included since it is a matmul) and T tokens; attention's
own ``T²`` terms are left out (about 4 % at T=128) so the MFU is a slight
under-count. The ceiling is a dense 8192³ bf16 matmul measured in the same
run; the datasheet's 989 TFLOP/s is shown too.

Runs in-process, without Ray (Ray and the data set cannot travel to the lent
GPU machine). ``--tiny`` runs the same code on CPU with toy shapes, to check
the script itself.

    python scripts/bench_gpu.py --out bench_gpu.json            # on the GPU machine
    python scripts/bench_gpu.py --tiny                          # anywhere, ~1 min
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # PYTHONPATH may point at another copy

from dataselect.core.config import TrainerConfig  # noqa: E402
from dataselect.features.perplexity import lm_scores  # noqa: E402
from dataselect.train import finetune  # noqa: E402

DATASHEET_TFLOPS = 989.0
"""H100/H200 SXM dense bf16, vendor datasheet (a lead; the measured matmul is the headline ceiling)."""


def word_tokenizer(vocab: int):
    """A whitespace word-level tokenizer ``w0..w{vocab-1}``: one token per word, exactly."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    words.update({f"w{i}": i + 5 for i in range(vocab - 5)})
    tok = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   bos_token="[CLS]", eos_token="[SEP]")


def texts(n: int, tokens: int, vocab: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=(n, tokens))
    return [" ".join(f"w{i - 5}" for i in row) for row in ids]


def matmul_tflops(device: str, n: int) -> float:
    """Dense bf16 ``n³`` matmul rate: the ceiling this run can reach."""
    dt = torch.bfloat16 if device == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dt)
    b = torch.randn(n, n, device=device, dtype=dt)
    for _ in range(3):
        a @ b
    sync(device)
    reps = 10
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_params(model: torch.nn.Module, *, lm_head: bool) -> int:
    """Parameters that do matrix work per token: all but embedding tables (plus a tied LM head)."""
    emb = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    n = sum(p.numel() for p in model.parameters() if id(p) not in emb)
    if lm_head:
        n += model.get_output_embeddings().weight.numel()
    return n


def result_row(name: str, flops: float, ours: float, peer: float, peak: float, **setup) -> dict:
    """One printed result: ours vs the plain loop, in ex/s, TFLOP/s and fractions of peak."""
    row = {"pass": name, **setup, "ours_ex_s": ours, "peer_ex_s": peer, "ratio": ours / peer,
           "ours_tflops": flops * ours / 1e12, "peer_tflops": flops * peer / 1e12,
           "ours_mfu_measured": flops * ours / 1e12 / peak,
           "ours_mfu_datasheet": flops * ours / 1e12 / DATASHEET_TFLOPS,
           "peer_mfu_measured": flops * peer / 1e12 / peak}
    print(json.dumps(row), flush=True)
    return row


# --------------------------------------------------------------------------- trainer
def encoder_config(tiny: bool):
    from transformers import ModernBertConfig

    if tiny:
        return ModernBertConfig(vocab_size=4096, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                num_attention_heads=2, pad_token_id=0, cls_token_id=2, sep_token_id=3,
                                bos_token_id=2, eos_token_id=3)
    # transformers' ModernBertConfig defaults are ModernBERT-base (22 x 768, GLU 1152, vocab 50368).
    return ModernBertConfig(pad_token_id=0, cls_token_id=2, sep_token_id=3, bos_token_id=2, eos_token_id=3)


def plain_train_loop(folder: str, batches: list[tuple[torch.Tensor, torch.Tensor]], device: str,
                     lr: float) -> float:
    """Examples/s of a bare bf16 AdamW loop over batches already on the device.

    Timed from its first step to its last, like ``finetune``'s own clock, in a
    process that has already run a model (CUDA context and kernels warm).
    """
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    sync(device)
    t0, seen = time.perf_counter(), 0
    for ids, y in batches:
        with ctx:
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        seen += len(y)
    sync(device)
    return seen / (time.perf_counter() - t0)


def bench_trainer(args, device: str, peak: float) -> list[dict]:
    from transformers import AutoModelForSequenceClassification

    tok = word_tokenizer(args.vocab)
    cfg = encoder_config(args.tiny)
    cfg.num_labels = 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(cfg)
        n_matmul = matmul_params(model, lm_head=False)
        n_all = sum(p.numel() for p in model.parameters())
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        del model
        # Warm the process (CUDA context, cuBLAS, autocast caches) once, untimed.
        warm = pd.DataFrame({"text": texts(64, args.tokens, args.vocab, 7), "label": [0, 1] * 32})
        finetune(warm, warm, TrainerConfig(model=tmp, batch_size=32, epochs=1, max_length=args.tokens,
                                           device=device), num_labels=2, seed=0, progress=False)
        for batch in args.train_batches:
            steps = args.train_steps
            n = batch * steps
            rng = np.random.default_rng(batch)
            train = pd.DataFrame({"text": texts(n, args.tokens, args.vocab, batch),
                                  "label": rng.integers(0, 2, n)})
            evals = pd.DataFrame({"text": texts(256, args.tokens, args.vocab, 99),
                                  "label": rng.integers(0, 2, 256)})
            tcfg = TrainerConfig(model=tmp, batch_size=batch, eval_batch_size=256, epochs=1,
                                 max_length=args.tokens, learning_rate=1e-5, warmup_ratio=0.0,
                                 device=device)
            res = finetune(train, evals, tcfg, num_labels=2, seed=0, progress=False)
            ours = res["train_examples_per_second"]
            # The same rows as ready GPU tensors; warm-up steps excluded from the peer's clock.
            ids = torch.tensor(tok(train["text"].tolist(), truncation=True, max_length=args.tokens)["input_ids"])
            y = torch.tensor(train["label"].to_numpy())
            batches = [(ids[i:i + batch].to(device), y[i:i + batch].to(device)) for i in range(0, n, batch)]
            peer = plain_train_loop(tmp, batches, device, 1e-5)
            rows.append(result_row("finetune (ModernBERT-base shape)", 6 * n_matmul * args.tokens, ours, peer,
                                   peak, batch=batch, tokens=args.tokens, steps=steps, params=n_all,
                                   matmul_params=n_matmul, bf16=res["bf16"]))
    return rows


# --------------------------------------------------------------------------- perplexity
def lm_config(tiny: bool, vocab: int):
    from transformers import Qwen3Config

    if tiny:
        return Qwen3Config(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True)
    # Qwen3-1.7B-Base's config.json: 28 x 2048, GQA 16/8 heads of 128, MLP 6144, vocab 151936, tied head.
    return Qwen3Config(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
                       max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6)


def plain_lm_loop(model, ids: torch.Tensor, batch: int, warmup: int) -> float:
    """Texts/s of a bare loop: ready GPU batches, forward, fp32 token NLL, mean per row."""
    t0, seen = 0.0, 0
    dev = ids.device.type
    with torch.inference_mode():
        for i, s in enumerate(range(0, len(ids), batch)):
            if i == warmup:
                sync(dev)
                t0, seen = time.perf_counter(), 0
            x = ids[s:s + batch]
            logits = model(input_ids=x).logits
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), x[:, 1:],
                                                    reduction="none").mean(1)
            nll.cpu()
            seen += len(x)
    sync(dev)
    return seen / (time.perf_counter() - t0)


def bench_perplexity(args, device: str, peak: float) -> list[dict]:
    from transformers import AutoModelForCausalLM

    tok = word_tokenizer(args.vocab)
    cfg = lm_config(args.tiny, args.vocab)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype).eval()
    n_matmul = matmul_params(model, lm_head=True)
    n_all = sum(p.numel() for p in model.parameters())
    rows = []
    for batch in args.lm_batches:
        n = batch * args.lm_steps
        docs = texts(n, args.tokens, args.vocab, batch)
        lm_scores(docs[: batch * 2], tok, model, max_length=args.tokens, batch_size=batch)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        out = lm_scores(docs, tok, model, max_length=args.tokens, batch_size=batch)
        sync(device)
        ours = n / (time.perf_counter() - t0)
        assert np.isfinite(out["lm_mean_nll"]).all()
        ids = torch.tensor(tok(docs, add_special_tokens=False, truncation=True,
                               max_length=args.tokens)["input_ids"], device=device)
        peer = plain_lm_loop(model, ids, batch, warmup=2)
        rows.append(result_row("perplexity (Qwen3-1.7B shape)", 2 * n_matmul * args.tokens, ours, peer, peak,
                               batch=batch, tokens=args.tokens, texts=n, params=n_all,
                               matmul_params=n_matmul, bf16=dtype == torch.bfloat16))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="toy shapes on CPU (checks the script)")
    ap.add_argument("--tokens", type=int, default=128, help="tokens per example (no padding)")
    ap.add_argument("--train-batches", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--train-steps", type=int, default=80)
    ap.add_argument("--lm-batches", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--lm-steps", type=int, default=40)
    ap.add_argument("--skip", choices=["trainer", "perplexity"], action="append", default=[])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.tiny:
        args.tokens, args.train_steps, args.lm_steps = 16, 6, 3
        args.train_batches, args.lm_batches = [4, 8], [4]
    args.vocab = 4096 if args.tiny else 30000
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    peak = matmul_tflops(device, 1024 if args.tiny else 8192)
    head = {"device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "dataselect": sys.modules[finetune.__module__].__file__, "measured_matmul_tflops": peak, "datasheet_tflops": DATASHEET_TFLOPS}
    print(json.dumps(head), flush=True)
    rows = []
    if "trainer" not in args.skip:
        rows += bench_trainer(args, device, peak)
    if "perplexity" not in args.skip:
        rows += bench_perplexity(args, device, peak)
    print(f"\n{'pass':34} {'batch':>5} {'ours ex/s':>10} {'peer ex/s':>10} {'ratio':>6} "
          f"{'TFLOP/s':>8} {'MFU(meas)':>9} {'MFU(sheet)':>10}")
    for r in rows:
        print(f"{r['pass']:34} {r['batch']:>5} {r['ours_ex_s']:>10.1f} {r['peer_ex_s']:>10.1f} {r['ratio']:>6.2f} "
              f"{r['ours_tflops']:>8.1f} {r['ours_mfu_measured']:>9.1%} {r['ours_mfu_datasheet']:>10.1%}")
    if args.out:
        args.out.write_text(json.dumps({**head, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
