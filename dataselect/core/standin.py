"""Offline stand-ins for the mission's pretrained LMs (Qwen3, ModernBERT).

Machines without hub access have no pretrained causal LM and no encoder with
an MLM head. This module builds small models of the *same architectures*
(``Qwen3ForCausalLM``, ``ModernBertForMaskedLM``) with a tokenizer trained on
the study's own corpus, saved with ``save_pretrained`` so every loader in
:mod:`dataselect.core.models` treats them like any local model folder.

* :func:`train_tokenizer` — byte-level BPE (Sennrich et al. 2016; GPT-2's
  byte alphabet, so no text is ever out of vocabulary).
* :func:`build_tiny_lm` — random weights, no training: test fixtures.
* :func:`train_standin_lm` — a brief next-token (or masked-token) training run
  so perplexities rank texts meaningfully; cached under
  ``<dir>/standin-<kind>-<hash>`` keyed on corpus and settings.

Perplexities from a stand-in are *not* comparable with Qwen3's; they are a
plumbing-faithful proxy for offline experiments.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from dataselect.core.errors import UserError

log = logging.getLogger(__name__)

Kind = Literal["qwen3", "modernbert"]
_KINDS = ("qwen3", "modernbert")
STANDIN_VERSION = 1
"""Bump to invalidate every cached stand-in (part of the cache key)."""

PAD, BOS, EOS, MASK, UNK = "<pad>", "<s>", "</s>", "<mask>", "<unk>"
_SPECIALS = [PAD, BOS, EOS, MASK, UNK]


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise UserError(f"standin kind must be one of {list(_KINDS)}; got {kind!r}")


def train_tokenizer(texts: Sequence[str], *, vocab_size: int = 2048, kind: Kind = "qwen3") -> Any:
    """Train a byte-level BPE tokenizer on ``texts``.

    Parameters
    ----------
    texts : sequence of str
        Training corpus.
    vocab_size : int, default=2048
        Target vocabulary size including the 256 byte symbols and specials.
    kind : {"qwen3", "modernbert"}, default="qwen3"
        ``qwen3`` adds no special tokens when encoding (like Qwen's tokenizer,
        which prepends no BOS); ``modernbert`` wraps inputs as
        ``<s> ... </s>`` (CLS/SEP), as MLM scoring expects.

    Returns
    -------
    transformers.PreTrainedTokenizerFast
        With pad/bos/eos/cls/sep/mask/unk tokens set.
    """
    _check_kind(kind)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer)
    if kind == "modernbert":
        bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A {EOS}",
            pair=f"{BOS} $A {EOS} $B:1 {EOS}:1",
            special_tokens=[(BOS, bos), (EOS, eos)],
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD, bos_token=BOS, eos_token=EOS, cls_token=BOS, sep_token=EOS,
        mask_token=MASK, unk_token=UNK, model_max_length=512,
    )


def build_tiny_lm(
    tokenizer: Any,
    out_dir: str | Path | None = None,
    *,
    kind: Kind = "qwen3",
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    seed: int = 0,
) -> Any:
    """A small randomly initialised ``Qwen3ForCausalLM`` or ``ModernBertForMaskedLM``.

    Parameters
    ----------
    tokenizer : PreTrainedTokenizerFast
        From :func:`train_tokenizer`; its size and special ids configure the model.
    out_dir : path, optional
        When given, model and tokenizer are saved there (``save_pretrained``),
        loadable by ``AutoModelForCausalLM`` / ``AutoModelForMaskedLM``.
    kind : {"qwen3", "modernbert"}
    hidden_size, num_layers, num_heads : int
        Model width/depth; ``hidden_size`` must be divisible by ``num_heads``.
    seed : int
        Seeds the weight initialisation (``torch.manual_seed``, restored after).

    Returns
    -------
    transformers.PreTrainedModel
        In eval mode, float32, ``attn_implementation="sdpa"``.
    """
    _check_kind(kind)
    import torch

    if hidden_size % num_heads:
        raise UserError(f"build_tiny_lm.hidden_size must be divisible by num_heads={num_heads}; got {hidden_size}")
    ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if kind == "qwen3":
        from transformers import Qwen3Config, Qwen3ForCausalLM

        cfg = Qwen3Config(
            vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers, num_attention_heads=num_heads,
            num_key_value_heads=max(1, num_heads // 2), head_dim=hidden_size // num_heads,
            max_position_embeddings=1024, tie_word_embeddings=True, **ids,
        )
        cls: Any = Qwen3ForCausalLM
    else:
        from transformers import ModernBertConfig, ModernBertForMaskedLM

        cfg = ModernBertConfig(
            vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers, num_attention_heads=num_heads,
            max_position_embeddings=1024, local_attention=128,
            cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id, **ids,
        )
        cls = ModernBertForMaskedLM
    cfg.dataselect_standin = True  # dataselect.core.models.describe_model reports it
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = cls._from_config(cfg, attn_implementation="sdpa", dtype=torch.float32)
    finally:
        torch.random.set_rng_state(state)
    model.eval()
    if out_dir is not None:
        _save(model, tokenizer, Path(out_dir))
    return model


def _save(model: Any, tokenizer: Any, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def corpus_hash(texts: Sequence[str]) -> str:
    """sha256 over length-prefixed UTF-8 texts (order-sensitive)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def train_standin_lm(
    texts: Sequence[str],
    out_dir: str | Path,
    *,
    kind: Kind = "qwen3",
    steps: int = 300,
    seed: int = 0,
    vocab_size: int = 4096,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    batch_size: int = 32,
    max_length: int = 64,
    learning_rate: float = 3e-3,
    mask_prob: float = 0.15,
    build: bool = True,
) -> Path:
    """Train (or reuse) an offline stand-in LM on ``texts``; return its folder.

    The folder is ``<out_dir>/standin-<kind>-<hash>`` where the hash covers the
    corpus (:func:`corpus_hash`), every argument below and
    :data:`STANDIN_VERSION`; an existing folder is reused without training.
    The model is built in a temporary sibling folder and renamed into place,
    so a killed run never leaves a half-written stand-in behind.

    Parameters
    ----------
    texts : sequence of str
        Training corpus, e.g. the SST-2 train texts of the study's pool.
    out_dir : path
        Parent folder of cached stand-ins.
    kind : {"qwen3", "modernbert"}, default="qwen3"
        ``qwen3``: next-token prediction (stand-in for ``Qwen/Qwen3-1.7B-Base``);
        ``modernbert``: masked-token prediction with BERT's 80/10/10 masking
        [1]_ (stand-in for ``answerdotai/ModernBERT-base``).
    steps : int, default=300
        AdamW steps; 300 steps of batch 32 at the default size took 103 s on
        2 shared (busy) CPU cores; training loss falls from ln(4096) = 8.3 to ~5.5.
    seed : int, default=0
        Seeds initialisation and batch sampling.
    vocab_size, hidden_size, num_layers, num_heads, batch_size, max_length : int
        Tokenizer and model size, training batch and truncation length.
    learning_rate : float, default=3e-3
        Peak AdamW learning rate (linear warm-up over 10% of steps, then linear decay).
    mask_prob : float, default=0.15
        Fraction of tokens masked per sequence (``modernbert`` only).
    build : bool, default=True
        False: return the folder without training (it may not exist yet);
        ``plan`` uses it to tell whether the stand-in's features are cached.

    Returns
    -------
    pathlib.Path
        The stand-in folder (config.json, weights, tokenizer), loadable by
        :func:`dataselect.core.models.load_causal_lm` / ``load_masked_lm``.

    References
    ----------
    .. [1] J. Devlin et al., "BERT: Pre-training of Deep Bidirectional
       Transformers for Language Understanding", NAACL 2019.
    """
    _check_kind(kind)
    texts = [t for t in texts if t]
    if not texts:
        raise UserError("train_standin_lm.texts must hold at least one non-empty text")
    if steps < 0:
        raise UserError(f"train_standin_lm.steps must be >= 0; got {steps}")
    settings = {
        "kind": kind, "steps": steps, "seed": seed, "vocab_size": vocab_size,
        "hidden_size": hidden_size, "num_layers": num_layers, "num_heads": num_heads,
        "batch_size": batch_size, "max_length": max_length, "learning_rate": learning_rate,
        "mask_prob": mask_prob if kind == "modernbert" else None, "version": STANDIN_VERSION,
    }
    key = hashlib.sha256(
        json.dumps({"corpus": corpus_hash(texts), **settings}, sort_keys=True).encode()
    ).hexdigest()[:16]
    parent = Path(out_dir)
    final = parent / f"standin-{kind}-{key}"
    if not build:
        return final
    if (final / "config.json").is_file():
        log.info("stand-in %s: reusing %s", kind, final)
        return final
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-standin-{kind}-", dir=parent))
    try:
        t0 = time.perf_counter()
        tokenizer = train_tokenizer(texts, vocab_size=vocab_size, kind=kind)
        model = build_tiny_lm(
            tokenizer, kind=kind, hidden_size=hidden_size, num_layers=num_layers,
            num_heads=num_heads, seed=seed,
        )
        loss = _train(model, tokenizer, texts, kind=kind, steps=steps, seed=seed,
                      batch_size=batch_size, max_length=max_length,
                      learning_rate=learning_rate, mask_prob=mask_prob)
        model.eval()
        _save(model, tokenizer, tmp)
        (tmp / "standin.json").write_text(json.dumps(
            {**settings, "n_texts": len(texts), "final_loss": loss,
             "train_seconds": round(time.perf_counter() - t0, 1)}, indent=1))
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / "config.json").is_file():  # lost a race only if the winner finished
                raise
        log.info("stand-in %s: trained %d steps (final loss %.3f) -> %s", kind, steps, loss, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _train(
    model: Any, tokenizer: Any, texts: list[str], *, kind: str, steps: int, seed: int,
    batch_size: int, max_length: int, learning_rate: float, mask_prob: float,
) -> float:
    import torch

    if steps == 0:
        return float("nan")
    # One intra-op thread: at this size a second thread buys little on an idle
    # machine and costs ~6x per step on a busy one (OpenMP spin-waits; measured
    # 0.26 vs 1.5 s/step on 2 shared cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_loop(model, tokenizer, texts, kind=kind, steps=steps, seed=seed, batch_size=batch_size,
                           max_length=max_length, learning_rate=learning_rate, mask_prob=mask_prob)
    finally:
        torch.set_num_threads(threads)


def _train_loop(
    model: Any, tokenizer: Any, texts: list[str], *, kind: str, steps: int, seed: int,
    batch_size: int, max_length: int, learning_rate: float, mask_prob: float,
) -> float:
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    model.train()
    loss_ema = float("nan")
    for step in range(steps):
        batch = [texts[i] for i in rng.integers(0, len(texts), size=batch_size)]
        enc = tokenizer(batch, padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt", add_special_tokens=(kind == "modernbert"))
        ids, att = enc["input_ids"], enc["attention_mask"]
        if kind == "qwen3":
            labels = ids.masked_fill(att == 0, -100)
            out = model(input_ids=ids, attention_mask=att, labels=labels)
        else:
            special = torch.tensor(
                [[t in (tokenizer.cls_token_id, tokenizer.sep_token_id) for t in row] for row in ids.tolist()])
            cand = (att == 1) & ~special
            pick = (torch.rand(ids.shape, generator=gen) < mask_prob) & cand
            labels = ids.masked_fill(~pick, -100)
            r = torch.rand(ids.shape, generator=gen)
            inp = ids.clone()
            inp[pick & (r < 0.8)] = tokenizer.mask_token_id
            rand_tok = torch.randint(len(tokenizer), ids.shape, generator=gen)
            swap = pick & (r >= 0.8) & (r < 0.9)
            inp[swap] = rand_tok[swap]
            out = model(input_ids=inp, attention_mask=att, labels=labels)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        v = float(out.loss.detach())
        loss_ema = v if loss_ema != loss_ema else 0.95 * loss_ema + 0.05 * v
        if (step + 1) % 50 == 0:
            log.info("stand-in %s: step %d/%d loss %.3f", kind, step + 1, steps, loss_ema)
    return loss_ema
