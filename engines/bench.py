"""Speed of the backends side by side (`echo-infinity bench --target backends`).

Every backend gets its own world state (same seed) and steps the same random
actions; frames are interleaved (frame i of every backend, in a rotating
order, before frame i+1), so load from other processes falls on all of them
alike and the ratios are measured in one run. Reported per backend:

  fps, latency_ms {p50, p95, p99, mean}   wall clock per frame (what a player sees)
  cpu_ms_p50                              this thread's CPU time per frame: with 1 thread
                                          every backend computes on it, so this figure is
                                          immune to other processes taking the core
  ratio_fps, ratio_cpu_p50                vs the `torch` backend (> 1: faster), when it ran
  requested / backend                     the name asked for and the one that ran (fallback)
  setup_s                                 export / session creation / compile time
"""

from __future__ import annotations

import time

import numpy as np
import torch

from world.model import WorldModel

from .registry import BACKENDS, make_backend


def bench_backends(model: WorldModel, backends: list[str], frames: int = 200, steps: int = 2, batch: int = 1,
                   seed: int = 0, warmup: int = 10, threads: int | None = 1, device: str = "cpu",
                   cache_dir=None, warn=print, progress: bool = True) -> dict:
    """Time `frames` streamed frames of each backend (interleaved) after `warmup` frames each. On
    CPU each backend's `matmul_share` is its frame rate x the frame's counted work
    (`gflop_per_frame`, world.bench.count_flops of the eager step) over this machine's fp32
    matmul rate at the same threads (`machine_gemm_gflops`): the figure that compares machines."""
    from tqdm import tqdm

    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise ValueError(f"unknown backend(s) {unknown}; choose from {list(BACKENDS)}")
    if threads is not None:
        torch.set_num_threads(threads)
    model = model.eval().to(device)
    runs = []
    for name in dict.fromkeys(backends):  # unique, in order
        t0 = time.perf_counter()
        backend = make_backend(name, model, batch, device=device, cache_dir=cache_dir, warn=warn)
        runs.append({"requested": name, "backend": backend, "setup_s": time.perf_counter() - t0,
                     "state": model.init_state(batch, seed=seed)})
    rng = np.random.default_rng(seed)
    actions = torch.from_numpy(rng.integers(0, model.cfg.dit.num_actions, size=(warmup + frames, batch)))
    actions = actions.to(device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    for i in range(warmup):
        for r in runs:
            r["backend"].step(r["state"], actions[i], steps)
    lat = np.zeros((len(runs), frames))
    cpu = np.zeros((len(runs), frames))
    for i in tqdm(range(frames), desc="bench backends", disable=not progress, mininterval=1.0):
        for j in np.roll(np.arange(len(runs)), -i):  # rotate who goes first
            r = runs[j]
            sync()
            t0, c0 = time.perf_counter(), time.thread_time()
            r["backend"].step(r["state"], actions[warmup + i], steps)
            sync()
            lat[j, i] = time.perf_counter() - t0
            cpu[j, i] = time.thread_time() - c0
    results = {}
    for j, r in enumerate(runs):
        ms, cms = lat[j] * 1000.0, cpu[j] * 1000.0
        results[r["requested"]] = {
            "backend": r["backend"].name,
            "fps": frames * batch / lat[j].sum(),
            "latency_ms": {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
                           "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean())},
            "cpu_ms_p50": float(np.median(cms)),
            "setup_s": r["setup_s"],
        }
    if torch.device(device).type == "cpu":  # the frame's work against this machine's matmul rate
        from world.bench import count_flops, gemm_gflops

        probe = model.init_state(batch, seed=seed)
        gflop = count_flops(lambda: model.step(probe, actions[0], steps))["total"] / 1e9 / batch
        peak = gemm_gflops(reps=5)
        for res in results.values():
            res["matmul_share"] = round(gflop * res["fps"] / peak, 3)
        extra = {"gflop_per_frame": round(gflop, 4), "machine_gemm_gflops": round(peak, 1)}
    else:
        extra = {}
    ref = results.get("torch")
    if ref is not None and ref["backend"] == "torch":
        for res in results.values():
            res["ratio_fps"] = res["fps"] / ref["fps"]
            res["ratio_cpu_p50"] = ref["cpu_ms_p50"] / res["cpu_ms_p50"]
    for r in runs:
        close = getattr(r["backend"], "close", None)
        if close:
            close()
    return {"backends": results, "frames": frames, "warmup": warmup, "steps": steps, "batch": batch,
            "threads": torch.get_num_threads(), "device": str(device), "preset": model.cfg.name,
            "policy": model.cfg.memory.policy, "interleaved": True, "torch_version": torch.__version__, **extra}
