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
    `random_init` times fresh random weights of `preset`: their done head ends every other
    step, so episodes run to the 1000-step limit instead (done_threshold=1), as a trained
    model's mostly do.
    """
    import torch

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

    def timed(env, actions, label: str, vector: bool) -> tuple[float, int]:
        env.reset(seed=seed)
        for a in actions[:3]:  # warm-up: first-call allocations, lazy inits
            env.step(a if vector else int(a[0]))
        episodes = 0
        t0 = time.perf_counter()
        for a in tqdm(actions[3:], desc=label, disable=not progress, mininterval=0.5):
            _, _, terminated, truncated, _ = env.step(a if vector else int(a[0]))
            if vector:
                episodes += int(np.sum(terminated | truncated))
            elif terminated or truncated:
                env.reset()
                episodes += 1
        return time.perf_counter() - t0, episodes

    results = {}
    env = WorldEnv(**common)
    seconds, episodes = timed(env, sticky(frames + 3, 1), "single env", vector=False)
    env.close()
    results["single"] = {"env_steps": frames, "seconds": round(seconds, 3),
                         "steps_per_s": round(frames / seconds, 1), "episodes_ended": episodes}
    single = frames / seconds
    for B in batches:
        vec = WorldVectorEnv(num_envs=B, **common)
        seconds, episodes = timed(vec, sticky(frames + 3, B), f"vector B={B}", vector=True)
        vec.close()
        rate = B * frames / seconds
        results[f"vector_{B}"] = {"num_envs": B, "env_steps": B * frames, "seconds": round(seconds, 3),
                                  "steps_per_s": round(rate, 1), "speedup_vs_single": round(rate / single, 2),
                                  "episodes_ended": episodes}
    return {
        "target": "env",
        "checkpoint": "random-init " + preset if random_init else str(checkpoint),
        "frames": frames,
        "results": results,
        "threads": threads,
        "cpu": platform.processor() or platform.machine(),
    }
