"""Which arithmetic a trial trains and evaluates in: fp32, or bf16 autocast where it is fast.

bf16 autocast pays only where the hardware multiplies bf16 natively: CUDA GPUs
with bf16, and x86 CPUs with AMX (``amx_bf16``, Sapphire Rapids and later).
Elsewhere the CPU emulates it: on this project's AMD EPYC machines (AVX2, no
AVX-512, no AMX) a 1024² bf16 matmul ran at 0.83 GFLOP/s against 65 in fp32
(BENCHMARKS.md, "Trial speed"), so ``auto`` must look at the hardware it
runs on rather than assume it. The CPU answer is read from the kernel's
feature flags at run time, on the node where the trial runs.

``auto`` picks bf16 on CUDA (as the trainer always did) and on AMX CPUs only
once a paired fp32-vs-bf16 study has shown the two within ±0.5 accuracy
points (issue 32): :data:`CPU_BF16_SHOWN_EQUIVALENT`. Until then a CPU trial
is fp32 unless the study asks for ``bf16`` by name.
"""

from __future__ import annotations

import functools
from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16")

CPU_BF16_SHOWN_EQUIVALENT = False
"""Whether the paired equivalence study (fp32 vs bf16 on the same subsets and seeds,
≥ 10 seeds at 1 % and 5 %) put the accuracy difference within ±0.5 points on an AMX CPU.
Not yet run: the machines the project has had since issue 32 are AVX2-only (see the
module docstring) and no GPU was lent, so there was no fast bf16 to compare."""


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the kernel reports (``/proc/cpuinfo``; empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def fast_bf16(device: str) -> tuple[bool, str]:
    """Whether ``device`` multiplies bf16 natively, and what that was read from."""
    if device.startswith("cuda"):
        import torch

        ok = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        return ok, "CUDA bf16 support" if ok else "this GPU has no bf16"
    flags = cpu_flags()
    if {"amx_bf16", "amx_tile"} <= flags:
        return True, "CPU flags amx_bf16, amx_tile"
    return False, "CPU without AMX (no amx_bf16 in /proc/cpuinfo): bf16 is emulated there"


def resolve_precision(setting: str, device: str) -> str:
    """``fp32`` or ``bf16`` for a trial on ``device`` (``setting`` is ``trainer.precision``)."""
    if setting not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {setting!r}")
    if setting != "auto":
        return setting
    fast, _ = fast_bf16(device)
    if not fast:
        return "fp32"
    return "bf16" if device.startswith("cuda") or CPU_BF16_SHOWN_EQUIVALENT else "fp32"
