"""Streaming speed bench of the world model (the `echo-infinity bench --target model` backend).

Measures what a player feels: wall time per frame of `WorldModel.step`
(K denoising steps + the context pass + decode to uint8 pixels), after a
warm-up, over N frames. The returned dict has stable top-level keys:

  fps                        frames / total measured seconds
  latency_ms                 {"p50", "p95", "p99", "mean", "max"} per-frame latency
  latency_ratio_last_first   mean latency of the last k frames / first k frames,
                             k = min(1000, frames // 4) (flat cost -> ~1.0)
  latency_ratio_last_first_p50  the same with medians (robust to other processes' spikes)
  latency_ms_by_tenth        mean latency of each tenth of the run (the flatness curve)
  cpu_ms_p50, cpu_ratio_last_first  the same from the stepping thread's CPU time (with
                             threads=1 all compute runs on it), so the flatness of the
                             model's cost is visible even when other processes share the CPU
  rss_mb                     {"start", "end"} resident memory after warm-up / at the end
  frames, policy, preset, backend ("torch"), steps, batch, threads, device
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import numpy as np
import torch

from .config import from_preset
from .model import WorldModel


def rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc; peak RSS elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latency_summary(ms: np.ndarray) -> dict:
    """Per-frame latencies (ms, in frame order) -> the bench JSON's latency names."""
    k = min(1000, len(ms) // 4)
    return {
        "latency_ms": {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
                       "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean()), "max": float(ms.max())},
        "latency_ratio_last_first": float(ms[-k:].mean() / ms[:k].mean()),
        "latency_ratio_last_first_p50": float(np.median(ms[-k:]) / np.median(ms[:k])),
        "ratio_window_frames": k,
    }


def count_flops(fn) -> dict[str, int]:
    """Run fn() once and count the FLOPs of its torch ops -> {op name: flops, "total": flops}.

    Matmuls, convolutions and attention (torch's counter plus the CPU SDPA kernel it
    does not know); elementwise ops are not counted, so this is a lower bound.
    """
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    counter = FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa})
    with counter:
        fn()
    counts = {str(op).removeprefix("aten."): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return {**counts, "total": int(counter.get_total_flops())}


def gemm_gflops(n: int = 1024, reps: int = 10, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of an n x n x n matmul (fp32 unless `dtype`) at torch's current thread count:
    the arithmetic ceiling of this machine, against which a model's achieved GFLOP/s is judged."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(reps):  # best of reps: the ceiling, not the average under noise
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def run_model_bench(preset: str = "tiny", policy: str = "evolving", frames: int = 2000, steps: int = 2,
                    batch: int = 1, seed: int = 0, random_init: bool = True, checkpoint: str | None = None,
                    warmup: int = 20, threads: int | None = 1, progress: bool = True,
                    device: str = "cpu") -> dict:
    """Step `batch` worlds for `frames` frames with random actions and time every frame.

    random_init: build `preset` with fresh weights (perturbed so every path
    computes non-trivial values); otherwise load `checkpoint` (a directory
    with model.safetensors + config.json) and use its preset/policy override.
    threads: torch intra-op threads; default 1. One tiny frame is too small
    a job to split across cores: on the 2-core dev box 2 threads give ~60 fps
    when idle but collapse (OpenMP spin-waits, <5 fps) as soon as another
    process holds a core, while 1 thread keeps ~45 fps either way. None keeps
    torch's default.
    """
    from tqdm import tqdm

    if frames < 4:
        raise ValueError(f"frames must be >= 4, got {frames}")
    if threads is not None:
        torch.set_num_threads(threads)
    if random_init:
        model = WorldModel(from_preset(preset, memory={"policy": policy})).randomize_(seed)
    else:
        if checkpoint is None:
            raise ValueError("pass checkpoint=DIR or random_init=True")
        model = WorldModel.load(checkpoint, policy=policy)  # the same weights drive every policy
        preset = model.cfg.name
    model = model.eval().to(device)
    rng = np.random.default_rng(seed)
    A = model.cfg.dit.num_actions
    actions = torch.from_numpy(rng.integers(0, A, size=(warmup + frames, batch), dtype=np.int64))
    state = model.init_state(batch, seed=seed)
    with torch.no_grad():  # not inference_mode: the state must stay usable outside it
        for i in range(warmup):
            model.step(state, actions[i], steps)
    rss_start = rss_mb()
    lat = np.empty(frames)  # wall clock: what a player sees
    cpu = np.empty(frames)  # this thread's CPU time: immune to other processes taking the core
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    t_start = time.perf_counter()
    with torch.no_grad():
        for i in tqdm(range(frames), desc=f"bench {preset}/{policy}", disable=not progress, mininterval=1.0):
            t0, c0 = time.perf_counter(), time.thread_time()
            out = model.step(state, actions[warmup + i], steps)
            sync()
            lat[i] = time.perf_counter() - t0
            cpu[i] = time.thread_time() - c0
    total = time.perf_counter() - t_start
    assert out.frame.dtype == torch.uint8
    k = min(1000, frames // 4)
    ms = lat * 1000.0
    return {
        "fps": frames * batch / total,
        **latency_summary(ms),
        "cpu_ms_p50": float(np.median(cpu) * 1000.0),
        "cpu_ratio_last_first": float(cpu[-k:].mean() / cpu[:k].mean()),
        "latency_ms_by_tenth": [float(seg.mean()) for seg in np.array_split(ms, min(10, frames))],
        "rss_mb": {"start": rss_start, "end": rss_mb()},
        "frames": frames,
        "policy": policy,
        "preset": preset,
        "backend": "torch",
        "steps": steps if steps is not None else model.cfg.sampler.steps,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "final_frame_index": int(state.frame.max()),
    }
