"""LM-judge flags: a causal LM answers yes/no questions about each text.

For each question in :data:`JUDGE_PROMPTS` the text is put into the prompt
and the LM's probability of each answer after ``Answer:`` is read, with no
sampling; the stored score is the log-odds of the two answers::

    judge_<flag> = log p(" Yes" | prompt) - log p(" No" | prompt)     (nats)

so ``sigmoid(judge_<flag>)`` is P(Yes) renormalised over {Yes, No}, and a
positive value means the LM says yes. Qwen3 encodes `` Yes`` and `` No`` as
one token each: one forward pass per prompt. An answer of several tokens (a
stand-in's small vocabulary) is scored as the sum of its tokens'
log-probabilities, appended to the prompt.

As in :mod:`dataselect.features.perplexity`, no BOS is prepended (Qwen3's
tokenizer adds none). Texts are cut to their first ``max_length`` tokens
before they go into the prompt. Edit the prompts here, in one place: they
are part of the cache key, so changing one recomputes the family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dataselect.core.config import FeaturesConfig
from dataselect.features._common import (
    FamilySpec,
    ModelBatch,
    length_batches,
    no_nan,
    torch_dtype_name,
)

JUDGE_PROMPTS: dict[str, str] = {
    "ambiguous": (
        "Movie review: \"{text}\"\n"
        "Question: Is the sentiment of this review ambiguous or mixed, so that it is unclear "
        "whether it is positive or negative? Answer Yes or No.\n"
        "Answer:"
    ),
    "sarcastic": (
        "Movie review: \"{text}\"\n"
        "Question: Is this review sarcastic or ironic, saying the opposite of what it means? "
        "Answer Yes or No.\n"
        "Answer:"
    ),
}
"""Flag name -> prompt template with one ``{text}`` slot (the only place prompts live)."""

ANSWERS = (" Yes", " No")
COLUMNS = tuple(f"judge_{k}" for k in JUDGE_PROMPTS)


def answer_ids(tokenizer: Any, answers: Sequence[str] = ANSWERS) -> tuple[list[int], list[int]]:
    """Token ids of the two answers (no special tokens); they must differ."""
    yes, no = (list(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
    if not yes or not no or yes == no:
        from dataselect.core.errors import ModelError

        raise ModelError(f"llm_judge: the tokenizer does not tell {answers[0]!r} from {answers[1]!r} "
                         f"({yes} vs {no})")
    return yes, no


def judge_prompt(template: str, text: str, tokenizer: Any, max_length: int) -> str:
    """``template`` with ``text`` cut to its first ``max_length`` tokens."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) > max_length:
        text = text[: enc["offset_mapping"][max_length - 1][1]]
    return template.format(text=text)


def _logprobs(
    seqs: list[list[int]], model: Any, pad_id: int, batch_size: int, targets: list[list[int]],
) -> np.ndarray:
    """Sum of ``log p(targets[j] | seqs[i])`` per sequence i and answer j; (n, len(targets)).

    Each answer is appended to the prompt (``prompt ids + answer ids``) and
    scored token by token; a one-token answer needs no extra pass, so all
    one-token answers share the prompt's single forward pass.
    """
    import torch

    single = [t[0] for t in targets if len(t) == 1]
    multi = [j for j, t in enumerate(targets) if len(t) > 1]
    out = np.zeros((len(seqs), len(targets)))
    device = next(model.parameters()).device
    jobs: list[tuple[int | None, list[list[int]]]] = []
    if single:
        jobs.append((None, seqs))
    jobs += [(j, [s + targets[j][:-1] for s in seqs]) for j in multi]
    for j, full in jobs:
        k = 1 if j is None else len(targets[j])
        lengths = np.fromiter((len(s) for s in full), dtype=np.int64, count=len(full))
        for idx in length_batches(lengths, batch_size):
            if not len(idx):
                continue
            # Left-padded, so every row's answer positions are its last k:
            # the LM head runs on those alone (tail_logits), not on every prompt token.
            width = int(lengths[idx].max())
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, width - lengths[i]:] = torch.tensor(full[i])
                mask[r, width - lengths[i]:] = 1
            with torch.inference_mode():
                logits = tail_logits(model, ids.to(device), mask.to(device), k)
                # fp32 log-softmax: bf16 logits lose digits that small log-odds need.
                lp = torch.log_softmax(logits.float(), -1)
            if j is None:
                cols = [c for c, t in enumerate(targets) if len(t) == 1]
                out[np.ix_(idx, cols)] = lp[:, -1, single].double().cpu().numpy()
                continue
            # logits at position width - k + t predict answer token t.
            tok_lp = lp[:, torch.arange(k), torch.tensor(targets[j])]
            out[idx, j] = tok_lp.double().sum(1).cpu().numpy()
    return out


def tail_logits(model: Any, ids: Any, mask: Any, k: int) -> Any:
    """Logits (b, k, vocab) of the last ``k`` positions of left-padded rows.

    Position ids follow the attention mask, so a row scores as it would
    unpadded. ``logits_to_keep`` (``num_logits_to_keep`` before
    transformers 4.50) makes the model apply its LM head (and any logit
    scaling) to those positions only: with a 150k vocabulary that head is a
    large share of a forward pass, and the judge needs one position per prompt.
    """
    import inspect

    pos = (mask.cumsum(1) - 1).clamp(min=0)
    params = inspect.signature(model.forward).parameters
    keep = next((a for a in ("logits_to_keep", "num_logits_to_keep") if a in params), None)
    kw = {keep: k} if keep else {}
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, **kw).logits
    return logits[:, -k:]


def judge_scores(
    texts: Sequence[str],
    tokenizer: Any,
    model: Any,
    *,
    prompts: Mapping[str, str] = JUDGE_PROMPTS,
    answers: Sequence[str] = ANSWERS,
    max_length: int = 128,
    batch_size: int = 16,
) -> dict[str, np.ndarray]:
    """``judge_<flag>`` (n,) float64 log-odds of ``answers[0]`` over ``answers[1]``; no Ray.

    Prompts of similar length are batched together, left-padded; position
    ids follow the attention mask (as in
    :func:`dataselect.features.perplexity.lm_scores`). With one-token
    answers (Qwen3's `` Yes``/`` No``) one forward pass per prompt reads both
    next-token log-probabilities; longer answers (a stand-in's small
    vocabulary) are appended to the prompt and summed over their tokens.
    """
    yes, no = answer_ids(tokenizer, answers)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else yes[0]
    out: dict[str, np.ndarray] = {}
    for flag, template in prompts.items():
        seqs = tokenizer([judge_prompt(template, t, tokenizer, max_length) for t in texts],
                         add_special_tokens=False)["input_ids"]
        lp = _logprobs([list(s) for s in seqs], model, pad_id, batch_size, [yes, no])
        out[f"judge_{flag}"] = lp[:, 0] - lp[:, 1]
    return out


class JudgeBatch(ModelBatch):
    """Ray Data UDF: causal LM loaded once per actor; returns ``id`` + :data:`COLUMNS`."""

    VERSION = 1
    loader = "load_causal_lm"

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        return judge_scores(texts, self.tokenizer, self.model, max_length=self.max_length,
                            batch_size=self.batch_size)


def judge_model(cfg: FeaturesConfig) -> str | None:
    """The judge LM: ``cfg.judge_model``, else the perplexity LM."""
    return cfg.judge_model if cfg.judge_model is not None else cfg.perplexity_model


def family_spec(cfg: FeaturesConfig, device: str, n_threads: int | None = None) -> FamilySpec:
    """The ``llm_judge`` family (``cfg.llm_judge``; model from :func:`judge_model`)."""
    dtype = torch_dtype_name(device)
    settings = {"max_length": cfg.max_length, "dtype": dtype}
    model = judge_model(cfg)
    return FamilySpec(
        name="llm_judge", udf=JudgeBatch,
        udf_kwargs={**settings, "model": model, "batch_size": cfg.perplexity_batch_size,
                    "device": device, "n_threads": n_threads},
        # Prompts and answers in the key: editing a prompt recomputes the scores.
        key_settings={**settings, "prompts": dict(JUDGE_PROMPTS), "answers": list(ANSWERS)},
        model_ref=model, columns=COLUMNS, uses_model=True,
        batch_rows=cfg.perplexity_batch_size * 16, check_values=no_nan(COLUMNS),
    )
