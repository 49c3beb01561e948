"""trainer.adamw: foreach is bit for bit the per-tensor AdamW earlier results used; fused is the
same update up to float rounding."""

from __future__ import annotations

import torch

from dataselect.core.config import TrainerConfig
from dataselect.train import finetune


def _steps(kw: dict, steps: int = 5) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shapes = [(3000, 64), (64, 64), (64,), (2, 64)]
    ps = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    opt = torch.optim.AdamW([{"params": ps[:2], "weight_decay": 1e-5}, {"params": ps[2:], "weight_decay": 0.0}],
                            lr=1e-3, **kw)
    for _ in range(steps):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g) * 1e-2
        opt.step()
    return [p.detach() for p in ps]


def test_foreach_adamw_is_the_old_loop_bit_for_bit_and_fused_rounds_only():
    loop = _steps({})  # torch's default on CPU tensors: the per-tensor loop the trainer used
    foreach = _steps({"foreach": True})
    fused = _steps({"fused": True})
    assert all(torch.equal(a, b) for a, b in zip(loop, foreach, strict=True))
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(loop, fused, strict=True))


def test_fused_and_foreach_fine_tunes_agree(sst2_train, sst2_eval):
    """Same seed, same rows: the two kernels give nearly the same classifier (they differ by
    rounding, which training amplifies only slightly over a few steps)."""
    cfg = TrainerConfig(mode="finetune", model="minilm", epochs=1.0, batch_size=16, eval_batch_size=64,
                        max_length=32, device="cpu", min_steps=6, learning_rate=5e-5)
    train, evalf = sst2_train.iloc[:96], sst2_eval.iloc[:64]
    a = finetune(train, evalf, cfg.model_copy(update={"adamw": "foreach"}), num_labels=2, seed=1, progress=False)
    b = finetune(train, evalf, cfg.model_copy(update={"adamw": "fused"}), num_labels=2, seed=1, progress=False)
    agree = (a["eval_predictions"].pred == b["eval_predictions"].pred).mean()
    assert agree >= 0.95 and abs(a["train_loss"] - b["train_loss"]) < 1e-3 * max(1.0, abs(a["train_loss"]))


def test_trial_key_of_foreach_is_the_key_before_the_setting():
    from dataselect.sweep.trial import trainer_key

    old = TrainerConfig(model="minilm").model_dump()
    for k in ("precision", "adamw"):
        del old[k]
    assert trainer_key({**old, "adamw": "foreach", "precision": "fp32"}, "fp32") == trainer_key(old, "fp32")
    assert trainer_key({**old, "adamw": "fused"}, "fp32") != trainer_key(old, "fp32")
