"""trainer.precision: bf16 only where the hardware is fast at it, recorded, and in the cache key."""

from __future__ import annotations

import pytest

from dataselect.core.config import TrainerConfig
from dataselect.train import finetune
from dataselect.train import precision as prec

AMX = frozenset({"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"})
AVX2 = frozenset({"avx", "avx2", "fma"})  # this project's AMD EPYC machines


@pytest.mark.parametrize(("flags", "shown", "want"), [
    (AVX2, False, "fp32"), (AVX2, True, "fp32"),  # emulated bf16: never auto
    (AMX, False, "fp32"),  # fast, but not yet shown equivalent
    (AMX, True, "bf16"),
])
def test_auto_reads_the_cpu_flags_and_the_equivalence_gate(monkeypatch, flags, shown, want):
    monkeypatch.setattr(prec, "cpu_flags", lambda: flags)
    monkeypatch.setattr(prec, "CPU_BF16_SHOWN_EQUIVALENT", shown)
    assert prec.resolve_precision("auto", "cpu") == want
    assert prec.resolve_precision("fp32", "cpu") == "fp32" and prec.resolve_precision("bf16", "cpu") == "bf16"
    assert prec.fast_bf16("cpu")[0] == (flags == AMX)


def test_cpu_flags_are_this_machines_own():
    """Read from /proc/cpuinfo, not assumed: whatever this machine is, the answer matches the
    kernel's flag line."""
    from pathlib import Path

    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "flags :")
    assert prec.cpu_flags() == frozenset(line.split(":", 1)[1].split())
    assert prec.fast_bf16("cpu")[0] == ({"amx_bf16", "amx_tile"} <= prec.cpu_flags())


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        prec.resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError):
        TrainerConfig(precision="fp16")


def test_finetune_records_the_precision_it_ran_in(sst2_train, sst2_eval):
    cfg = TrainerConfig(mode="finetune", model="minilm", epochs=1.0, batch_size=16, eval_batch_size=64,
                        max_length=32, device="cpu", min_steps=2)
    train, evalf = sst2_train.iloc[:32], sst2_eval.iloc[:16]
    f32 = finetune(train, evalf, cfg.model_copy(update={"precision": "fp32"}), num_labels=2, seed=0,
                   progress=False)
    b16 = finetune(train, evalf, cfg.model_copy(update={"precision": "bf16"}), num_labels=2, seed=0,
                   progress=False)
    assert f32["compute_dtype"] == "fp32" and not f32["bf16"]
    assert b16["compute_dtype"] == "bf16" and b16["bf16"]
    assert f32["train_loss"] != b16["train_loss"]  # bf16 autocast really ran on the CPU


def test_trial_key_holds_the_resolved_precision_and_keeps_fp32_keys_as_they_were():
    """An fp32 trial's key is the key it had before trainer.precision existed (so earlier
    studies resume and lend their trials); bf16 is a different key; 'auto' never enters."""
    from dataselect.sweep.trial import trainer_key

    old = TrainerConfig(model="minilm").model_dump()
    del old["precision"]  # what study.json held before the setting
    for setting in ("auto", "fp32"):
        assert trainer_key({**old, "precision": setting}, "fp32") == old
    assert trainer_key(old, "fp32") == old
    assert trainer_key({**old, "precision": "auto"}, "bf16") == {**old, "precision": "bf16"}
    assert trainer_key({**old, "precision": "auto"}, None) == old  # a probe trial
