"""Teacher speed: frames per second of the procedural game on this machine."""
from __future__ import annotations

import os
import platform
import time

import numpy as np
from tqdm import tqdm

from .teacher import ACTION_MEANINGS, TeacherEnv


def bench_teacher(frames: int = 20_000, resolution: int = 64, seed: int = 0, progress: bool = True) -> dict:
    """Step the raw env with sticky random actions (each held 8-32 frames, so the
    player walks into new terrain and chunks get generated); resets on hazards
    are included in the time. Actions are drawn up front: the timed loop is the game alone.
    """
    env = TeacherEnv(resolution=resolution)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    holds = rng.integers(8, 33, frames // 8 + 1)
    actions = np.repeat(rng.integers(0, len(ACTION_MEANINGS), len(holds)), holds)[:frames]
    episodes = 1
    t0 = time.perf_counter()
    for a in tqdm(actions, desc=f"teacher {resolution}px", disable=not progress, mininterval=0.5):
        _, _, terminated, _, _ = env.step(int(a))
        if terminated:
            env.reset()
            episodes += 1
    seconds = time.perf_counter() - t0
    return {
        "target": "teacher",
        "frames": frames,
        "resolution": resolution,
        "seconds": round(seconds, 3),
        "fps": round(frames / seconds, 1),
        "episodes": episodes,
        "threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "cpu": platform.processor() or platform.machine(),
    }


def bench_env(checkpoint: str | None = None, random_init: bool = False, frames: int = 100,
              batches: tuple[int, ...] = (1, 8, 32), preset: str = "tiny", text_encoder: str = "minilm",
              threads: int | None = 1, seed: int = 0, progress: bool = True) -> dict:
    """Env steps per second of `EchoInfinity/World-v0`: the single env, then the vector env
    at each batch size, in this one process (compare figures from the same run only).

    Each configuration is stepped `frames` times after 3 warm-up steps (a vector step moves all
    B worlds: B env steps) with sticky random actions; autoresets are included in the time.
    One more step is run under a FLOP counter, and the machine's own fp32 matmul rate is
    measured, so the JSON says how close each configuration comes to the arithmetic ceiling
    and the most any batching could give: `speedup_bound_vs_single` = machine GFLOP/s /
    the single env's achieved GFLOP/s (the FLOPs of one env step do not shrink with B).
    `random_init` times fresh random weights of `preset`: their done head ends every other
    step, so episodes run to the 1000-step limit instead (done_threshold=1), as a trained
    model's mostly do.
    """
    import torch

    from world.bench import count_flops, gemm_gflops
    from world.model import build_model

    from .world_env import WorldEnv
    from .world_vector import WorldVectorEnv

    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if threads is not None:
        torch.set_num_threads(threads)
    if random_init:
        source, extra = build_model(preset).randomize_(seed), {"done_threshold": 1.0}
    elif checkpoint is None:
        raise ValueError("pass a checkpoint directory or random_init=True")
    else:
        source, extra = checkpoint, {}
    common = dict(checkpoint=source, text_encoder=text_encoder, **extra)
    rng = np.random.default_rng(seed)

    def sticky(n: int, width: int) -> np.ndarray:  # [n, width] actions, each held 8 steps
        return np.repeat(rng.integers(0, len(ACTION_MEANINGS), (n // 8 + 1, width)), 8, axis=0)[:n]

    def timed(env, actions, label: str, vector: bool) -> tuple[float, int, int]:
        env.reset(seed=seed)
        for a in actions[:3]:  # warm-up: first-call allocations, lazy inits
            env.step(a if vector else int(a[0]))
        episodes = 0
        t0 = time.perf_counter()
        for a in tqdm(actions[3:-1], desc=label, disable=not progress, mininterval=0.5):
            _, _, terminated, truncated, _ = env.step(a if vector else int(a[0]))
            if vector:
                episodes += int(np.sum(terminated | truncated))
            elif terminated or truncated:
                env.reset()
                episodes += 1
        seconds = time.perf_counter() - t0
        flops = count_flops(lambda: env.step(actions[-1] if vector else int(actions[-1][0])))["total"]
        return seconds, episodes, flops

    def compute(flops: int, env_steps_per_call: int, rate: float) -> dict:
        per_step = flops / env_steps_per_call
        return {"gflop_per_env_step": round(per_step / 1e9, 4), "achieved_gflops": round(per_step * rate / 1e9, 2)}

    results = {}
    env = WorldEnv(**common)
    seconds, episodes, flops = timed(env, sticky(frames + 4, 1), "single env", vector=False)
    env.close()
    single = frames / seconds
    results["single"] = {"env_steps": frames, "seconds": round(seconds, 3),
                         "steps_per_s": round(single, 1), "episodes_ended": episodes, **compute(flops, 1, single)}
    for B in batches:
        vec = WorldVectorEnv(num_envs=B, **common)
        seconds, episodes, flops = timed(vec, sticky(frames + 4, B), f"vector B={B}", vector=True)
        vec.close()
        rate = B * frames / seconds
        results[f"vector_{B}"] = {"num_envs": B, "env_steps": B * frames, "seconds": round(seconds, 3),
                                  "steps_per_s": round(rate, 1), "speedup_vs_single": round(rate / single, 2),
                                  "episodes_ended": episodes, **compute(flops, B, rate)}
    peak = gemm_gflops()
    return {
        "target": "env",
        "checkpoint": "random-init " + preset if random_init else str(checkpoint),
        "frames": frames,
        "results": results,
        "machine_gemm_gflops": round(peak, 1),
        "speedup_bound_vs_single": round(peak / results["single"]["achieved_gflops"], 2),
        "threads": threads,
        "cpu": platform.processor() or platform.machine(),
    }
