"""Training arithmetic precision: bf16 autocast where this CPU runs bf16 matmuls natively and
fast, fp32 everywhere else.

Machines differ: on an AVX2-only CPU (no AVX-512 BF16, no AMX) torch emulates bf16 and a
stage-1 step under autocast was 3.9x *slower* (6.7 s -> 26.0 s, issue 14), while a CPU with
AMX tiles runs a bf16 matmul several times faster than fp32. So nothing is assumed from flags:
`"auto"` times both matmuls at the training's thread count and takes bf16 only when it wins by
`MIN_SPEEDUP`. Weights, optimizer state and losses stay fp32 (torch autocast keeps mse and
the other reductions in fp32); only the autocast ops (matmuls, convolutions, attention) run in bf16.
"""

from __future__ import annotations

import contextlib

import torch

from .bench import gemm_gflops
from .train_config import PRECISIONS

MIN_SPEEDUP = 1.5
"""bf16 must beat fp32 on the matmul by this much: autocast adds casts around every op, and
the small elementwise ops of a training step do not get faster."""


def bf16_speedup() -> float:
    """bf16 over fp32 matmul rate on this CPU (< 1 where bf16 is emulated)."""
    return gemm_gflops(512, 10, torch.bfloat16) / gemm_gflops(512, 10)


def resolve(precision: str, device: torch.device | str = "cpu") -> tuple[str, float | None]:
    """The precision a run uses -> ("fp32" | "bf16", the measured bf16 speedup or None).
    "auto" on a CPU measures; "auto" on CUDA takes bf16 where the GPU supports it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision != "auto":
        return precision, None
    if device.type == "cuda":
        return ("bf16" if torch.cuda.is_bf16_supported() else "fp32"), None
    speedup = bf16_speedup()
    return ("bf16" if speedup >= MIN_SPEEDUP else "fp32"), round(speedup, 2)


def autocast(precision: str, device: torch.device | str = "cpu") -> contextlib.AbstractContextManager:
    """The context a training forward runs in: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
